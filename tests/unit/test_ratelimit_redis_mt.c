/* The rate-limit actor in Redis-shared mode, against the real test Redis
 * (HERALD_TEST_REDIS_URL, started by scripts/test through scripts/services):
 * Redis verdicts follow the local GCRA semantics (burst, retry_after, peek,
 * independent items); two actors (two nodes) on one Redis share one budget;
 * keys carry an expiry and a full-precision TAT; NOSCRIPT falls back to
 * EVAL; with Redis stopped (`scripts/services redis-stop`) every check is
 * answered at once by the configured fallback (local, allow, deny), metrics
 * and /readyz say so, and after `redis-start` the same instances are shared
 * again by themselves.
 *
 * The outage tests stop the shared test Redis. Criterion runs this file's
 * tests in parallel processes, so each test holds a lock on a file beside
 * the services: shared for the tests that only use Redis, exclusive for the
 * ones that stop it (ctest keeps other executables away: RESOURCE_LOCK
 * redis). The outage window holds no asserts, and a watchdog starts Redis
 * again should the window hang, so Redis always comes back. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "actors/ratelimit_redis.h"
#include "herald/buf.h"
#include "herald/core.h"
#include "herald/health.h"
#include "herald/metrics.h"
#include "herald/ratelimit.h"
#include "outage.h"

#define UP_WITHIN_MS      5000
#define DOWN_WITHIN_MS    5000
#define RECOVER_WITHIN_MS 15000 /* back-off tops out at 5 s */
#define FALLBACK_MAX_MS   100   /* "at once", with sanitizer overhead */
#define WATCHDOG_S        40

/* ---- fixture ------------------------------------------------------------ */

static const char *redis_url(void)
{
    const char *u = getenv("HERALD_TEST_REDIS_URL");
    cr_assert(u && *u, "HERALD_TEST_REDIS_URL is not set: run the tests through scripts/test "
                       "(it starts Redis with scripts/services and exports its env file)");
    return u;
}

/* Holds the Redis lock for the rest of this test's process: shared to use
 * Redis, exclusive to stop it. */
static void lock_redis(bool exclusive)
{
    signal(SIGPIPE, SIG_IGN);
    const char *dir = getenv("HERALD_SERVICES_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/herald-ratelimit-redis.lock", dir && *dir ? dir : "/tmp");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    cr_assert(fd >= 0, "open %s", path);
    cr_assert(flock(fd, exclusive ? LOCK_EX : LOCK_SH) == 0);
}

/* A policy name no parallel run uses. */
static void uniq(char *out, size_t cap, const char *what)
{
    static int n;
    snprintf(out, cap, "%s%d_%d", what, (int)getpid() % 100000, n++);
}

static struct hd_ratelimit *start(const char *url, enum hd_rl_redis_down mode)
{
    struct hd_ratelimit_options o = {.max_keys = 1000, .redis_url = url, .redis_down = mode};
    struct hd_ratelimit *rl = hd_ratelimit_start(&o);
    cr_assert_not_null(rl);
    return rl;
}

static bool wait_up(struct hd_ratelimit *rl, bool up, int ms)
{
    for (uint64_t t0 = hd_now_ms(); hd_now_ms() - t0 < (uint64_t)ms;) {
        if (hd_ratelimit_redis_up(rl) == up)
            return true;
        usleep(10000);
    }
    return hd_ratelimit_redis_up(rl) == up;
}

static void start_up(struct hd_ratelimit **rl, const char *url, enum hd_rl_redis_down mode)
{
    *rl = start(url, mode);
    cr_assert(wait_up(*rl, true, UP_WITHIN_MS), "Redis at %s not up within %d ms", url,
              UP_WITHIN_MS);
}

static void post_sem(struct hd_rl_check *c)
{
    sem_post(c->ctx);
}

/* Runs one check synchronously; returns how long it took in ms. */
static uint64_t run(struct hd_ratelimit *rl, struct hd_rl_check *c)
{
    sem_t sem;
    sem_init(&sem, 0, 0);
    c->ctx = &sem;
    c->done = post_sem;
    uint64_t t0 = hd_now_us();
    hd_ratelimit_submit(rl, c);
    sem_wait(&sem);
    sem_destroy(&sem);
    return (hd_now_us() - t0) / 1000;
}

static struct hd_rl_item *item(struct hd_rl_check *c, const char *policy, const char *key,
                               int limit, int window, int burst)
{
    struct hd_rl_item *it = &c->items[c->n++];
    snprintf(it->policy, sizeof(it->policy), "%s", policy);
    snprintf(it->key, sizeof(it->key), "%s", key);
    it->key_len = strlen(key);
    it->rule = (struct hd_gcra_rule){limit, window, burst};
    return it;
}

/* One cost-1 check of one item; the verdict in *out. */
static struct hd_rl_check check1(struct hd_ratelimit *rl, const char *policy, const char *key,
                                 int limit, int window, int burst, bool peek)
{
    struct hd_rl_check c = {.cost = 1};
    item(&c, policy, key, limit, window, burst)->peek = peek;
    run(rl, &c);
    return c;
}

/* A synchronous connection for looking at keys. */
static redisContext *inspect(void)
{
    struct hd__rl_redis_url u;
    cr_assert_eq(hd__rl_redis_url_parse(redis_url(), &u, NULL), 0);
    redisContext *rc = redisConnect(u.host, u.port);
    cr_assert(rc && !rc->err, "connect to the test Redis");
    if (u.db) {
        redisReply *r = redisCommand(rc, "SELECT %d", u.db);
        freeReplyObject(r);
    }
    return rc;
}

static long long redis_int(redisContext *rc, const char *fmt, const char *key, size_t len)
{
    redisReply *r = redisCommand(rc, fmt, key, len);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s: %s", fmt, r ? r->str : "no reply");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static char *metrics(void)
{
    struct hd_buf m = {0};
    hd_metrics_render(&m);
    hd_buf_append(&m, "", 1);
    return m.data;
}

/* Sends what this process writes to stderr (the log) to a file until
 * capture_end, which returns it (free it). */
static int capture_begin(FILE **f)
{
    *f = tmpfile();
    cr_assert_not_null(*f);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(*f), STDERR_FILENO);
    return saved;
}

static char *capture_end(FILE *f, int saved)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(f);
    char *s = hd_calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    rewind(f);
    size_t got = fread(s, 1, (size_t)(n > 0 ? n : 0), f);
    s[got] = '\0';
    fclose(f);
    fputs(s, stderr); /* still visible in the test output */
    return s;
}

/* ---- URL --------------------------------------------------------------- */

Test(ratelimit_redis, url_parsing)
{
    struct hd__rl_redis_url u;
    cr_assert_eq(hd__rl_redis_url_parse("redis://127.0.0.1:6380/2", &u, NULL), 0);
    cr_expect_str_eq(u.host, "127.0.0.1");
    cr_expect_eq(u.port, 6380);
    cr_expect_eq(u.db, 2);
    cr_expect_str_eq(u.password, "");
    cr_assert_eq(hd__rl_redis_url_parse("redis://cache.internal", &u, NULL), 0);
    cr_expect_eq(u.port, 6379);
    cr_expect_eq(u.db, 0);
    cr_assert_eq(hd__rl_redis_url_parse("redis://:p%40ss:w@h:1/", &u, NULL), 0);
    cr_expect_str_eq(u.password, "p@ss:w");
    cr_expect_str_eq(u.user, "");
    cr_expect_str_eq(u.host, "h");
    cr_assert_eq(hd__rl_redis_url_parse("redis://alice:s3cret@[::1]:7000/15", &u, NULL), 0);
    cr_expect_str_eq(u.user, "alice");
    cr_expect_str_eq(u.password, "s3cret");
    cr_expect_str_eq(u.host, "::1");
    cr_expect_eq(u.port, 7000);
    cr_expect_eq(u.db, 15);
    static const char *const bad[] = {
        "http://h",    "redis://",        "redis://h:0",     "redis://h:70000", "redis://h:x",
        "redis://h/x", "redis://h/0?a=b", "redis://alice@h", "redis://:%zz@h",  "redis://:%00@h",
        "rediss://h",  "redis://[::1",    "redis://:pw@:80", "redis://h:/1",
    };
    for (size_t i = 0; i < HD_ARRAY_LEN(bad); i++) {
        const char *why = NULL;
        cr_expect_eq(hd__rl_redis_url_parse(bad[i], &u, &why), -EINVAL, "%s", bad[i]);
        cr_expect(why && !strstr(why, "zz"), "%s: reason %s", bad[i], why ? why : "(none)");
    }
    /* A bad URL refuses to start, and the log never quotes it. */
    struct hd_ratelimit_options o = {.max_keys = 10, .redis_url = "redis://:pw@h:0"};
    cr_expect_null(hd_ratelimit_start(&o));
}

/* ---- semantics ------------------------------------------------------------ */

Test(ratelimit_redis, verdicts_match_the_local_semantics, .timeout = 60)
{
    lock_redis(false);
    struct hd_ratelimit *shared, *local = start(NULL, HD_RL_REDIS_DOWN_LOCAL);
    start_up(&shared, redis_url(), HD_RL_REDIS_DOWN_DENY);
    char pol[32];
    uniq(pol, sizeof(pol), "login_ip");
    int allowed = 0;
    for (int i = 0; i < 10; i++) { /* 10/min, burst 5 */
        struct hd_rl_check r = check1(shared, pol, "192.0.2.1", 10, 60, 5, false);
        struct hd_rl_check l = check1(local, pol, "192.0.2.1", 10, 60, 5, false);
        const struct hd_gcra_verdict *rv = &r.items[0].verdict, *lv = &l.items[0].verdict;
        cr_assert_eq(r.decided_by, HD_RL_BY_REDIS, "check %d", i);
        cr_assert_eq(l.decided_by, HD_RL_BY_LOCAL);
        cr_expect_eq(r.allowed, l.allowed, "check %d", i);
        cr_expect_eq(r.denied, r.allowed ? -1 : 0);
        cr_expect_eq(rv->limit, 10);
        cr_expect_eq(rv->remaining, lv->remaining, "check %d: %d vs %d", i, rv->remaining,
                     lv->remaining);
        cr_expect(rv->reset_s > lv->reset_s - 0.1 && rv->reset_s < lv->reset_s + 0.1,
                  "check %d: reset %f vs %f", i, rv->reset_s, lv->reset_s);
        cr_expect(rv->retry_after_s > lv->retry_after_s - 0.1 &&
                      rv->retry_after_s < lv->retry_after_s + 0.1,
                  "check %d: retry %f vs %f", i, rv->retry_after_s, lv->retry_after_s);
        if (!r.allowed)
            cr_expect(rv->retry_after_s > 5.0 && rv->retry_after_s <= 6.0, "retry %f",
                      rv->retry_after_s);
        allowed += r.allowed;
    }
    cr_expect_eq(allowed, 6, "burst 5 allows 6 at once, got %d", allowed);

    /* A cost above burst + 1 never fits, and costs nothing. */
    struct hd_rl_check big = {.cost = 3};
    item(&big, pol, "big", 1, 60, 1);
    run(shared, &big);
    cr_expect(!big.allowed);
    cr_expect(big.items[0].verdict.retry_after_s > 59.0, "%f", big.items[0].verdict.retry_after_s);
    cr_expect(check1(shared, pol, "big", 1, 60, 1, false).allowed);

    /* Items are independent keys per policy; a denial on a later item still
     * charges the earlier ones. */
    char pa[32], pb[32];
    uniq(pa, sizeof(pa), "a");
    uniq(pb, sizeof(pb), "b");
    for (int i = 0; i < 2; i++) {
        struct hd_rl_check c = {.cost = 1};
        item(&c, pa, "k", 10, 60, 5);
        item(&c, pb, "k", 1, 60, 0); /* one, then denied */
        run(shared, &c);
        cr_expect_eq(c.allowed, i == 0, "round %d", i);
        cr_expect_eq(c.denied, i == 0 ? -1 : 1, "round %d", i);
        cr_expect(c.items[0].verdict.allowed);
        cr_expect_eq(c.items[0].verdict.remaining, 5 - i, "round %d", i);
    }
    struct hd_rl_check after = check1(shared, pa, "k", 10, 60, 5, true);
    cr_expect_eq(after.items[0].verdict.remaining, 4, "both attempts were charged");
    hd_ratelimit_stop(shared);
    hd_ratelimit_stop(local);
}

Test(ratelimit_redis, peek_reports_without_charging, .timeout = 60)
{
    lock_redis(false);
    struct hd_ratelimit *rl;
    start_up(&rl, redis_url(), HD_RL_REDIS_DOWN_DENY);
    redisContext *rc = inspect();
    char pol[32], key[64];
    uniq(pol, sizeof(pol), "login_account");
    snprintf(key, sizeof(key), "herald:rl:%s:a@example.com", pol);
    for (int i = 0; i < 20; i++) { /* 1/min burst 1 */
        struct hd_rl_check c = check1(rl, pol, "a@example.com", 1, 60, 1, true);
        cr_assert_eq(c.decided_by, HD_RL_BY_REDIS);
        cr_assert(c.allowed, "peek %d was denied", i);
        cr_assert_eq(c.items[0].verdict.remaining, 2);
    }
    cr_expect_eq(redis_int(rc, "EXISTS %b", key, strlen(key)), 0, "a peek wrote the key");
    for (int i = 0; i < 2; i++)
        cr_assert(check1(rl, pol, "a@example.com", 1, 60, 1, false).allowed);
    struct hd_rl_check c = check1(rl, pol, "a@example.com", 1, 60, 1, true);
    cr_expect(!c.allowed);
    cr_expect_eq(c.denied, 0);
    double retry = c.items[0].verdict.retry_after_s;
    cr_expect(retry > 59.0 && retry <= 60.0, "retry after %f s, want ~60", retry);
    struct hd_rl_check d = check1(rl, pol, "a@example.com", 1, 60, 1, false);
    cr_expect(!d.allowed);
    cr_expect(d.items[0].verdict.retry_after_s > retry - 0.5 &&
                  d.items[0].verdict.retry_after_s <= retry + 0.001,
              "charge retry %f vs peek %f", d.items[0].verdict.retry_after_s, retry);
    redisFree(rc);
    hd_ratelimit_stop(rl);
}

/* ---- sharing --------------------------------------------------------------- */

struct poster {
    struct hd_ratelimit *rl;
    const char *policy;
    int allowed, by_redis;
};

static void count_done(struct hd_rl_check *c)
{
    sem_post(c->ctx);
}

/* Posts 100 checks without waiting between them (they pipeline), then
 * waits for all. */
static void *post_many(void *arg)
{
    struct poster *p = arg;
    enum { N = 100 };
    struct hd_rl_check *c = hd_calloc(N, sizeof(*c));
    sem_t sem;
    sem_init(&sem, 0, 0);
    for (int i = 0; i < N; i++) {
        c[i].cost = 1;
        item(&c[i], p->policy, "shared", 100, 3600, 49); /* at most 50 at once */
        c[i].ctx = &sem;
        c[i].done = count_done;
        hd_ratelimit_submit(p->rl, &c[i]);
    }
    for (int i = 0; i < N; i++)
        sem_wait(&sem);
    for (int i = 0; i < N; i++) {
        p->allowed += c[i].allowed;
        p->by_redis += c[i].decided_by == HD_RL_BY_REDIS;
    }
    sem_destroy(&sem);
    free(c);
    return NULL;
}

Test(ratelimit_redis, two_nodes_share_one_budget, .timeout = 60)
{
    lock_redis(false);
    struct hd_ratelimit *a, *b;
    start_up(&a, redis_url(), HD_RL_REDIS_DOWN_LOCAL);
    start_up(&b, redis_url(), HD_RL_REDIS_DOWN_LOCAL);
    char pol[32];
    uniq(pol, sizeof(pol), "stream_ip");
    pthread_t t[4];
    struct poster p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (struct poster){i % 2 ? b : a, pol, 0, 0};
        pthread_create(&t[i], NULL, post_many, &p[i]);
    }
    int total = 0, by_redis = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += p[i].allowed;
        by_redis += p[i].by_redis;
    }
    cr_expect_eq(by_redis, 400, "only %d of 400 decided by Redis", by_redis);
    /* 400 tries across two nodes in far less than one emission interval
     * (36 s): the burst (50), maybe one more as time passes, never more. */
    cr_expect(total >= 50 && total <= 51, "allowed %d of 400", total);
    /* Either node now sees the other's charges. */
    cr_expect(!check1(b, pol, "shared", 100, 3600, 49, false).allowed);
    char *m = metrics();
    cr_expect(strstr(m, "herald_ratelimit_redis_up 1\n"), "%s", m);
    cr_expect(strstr(m, "herald_ratelimit_redis_seconds_bucket{le=\"+Inf\"}"), "%s", m);
    cr_expect(strstr(m, "herald_ratelimit_redis_fallback_total{mode=\"local\"} 0\n"), "%s", m);
    free(m);
    hd_ratelimit_stop(a);
    hd_ratelimit_stop(b);
}

/* ---- keys -------------------------------------------------------------------- */

Test(ratelimit_redis, keys_expire_and_keep_full_precision, .timeout = 60)
{
    lock_redis(false);
    struct hd_ratelimit *rl;
    start_up(&rl, redis_url(), HD_RL_REDIS_DOWN_DENY);
    redisContext *rc = inspect();
    char pol[32];
    uniq(pol, sizeof(pol), "p");
    /* A binary key with a NUL and a ':' is kept byte for byte. */
    struct hd_rl_check c = {.cost = 1};
    struct hd_rl_item *it = item(&c, pol, "", 10, 60, 5); /* T = 6 s */
    memcpy(it->key, "a\0b:c", 5);
    it->key_len = 5;
    run(rl, &c);
    cr_assert(c.allowed);
    cr_assert_eq(c.decided_by, HD_RL_BY_REDIS);
    char key[128];
    int n = snprintf(key, sizeof(key), "herald:rl:%s:", pol);
    memcpy(key + n, "a\0b:c", 5);
    size_t klen = (size_t)n + 5;
    long long pttl = redis_int(rc, "PTTL %b", key, klen);
    cr_expect(pttl > 5000 && pttl <= 6000, "PTTL %lld ms, want ~6000", pttl);
    /* The TAT is the whole µs timestamp: now + T. */
    redisReply *t = redisCommand(rc, "TIME");
    redisReply *v = redisCommand(rc, "GET %b", key, klen);
    cr_assert(t && t->type == REDIS_REPLY_ARRAY && v && v->type == REDIS_REPLY_STRING);
    long long now = atoll(t->element[0]->str) * 1000000LL + atoll(t->element[1]->str);
    cr_expect_eq(strspn(v->str, "0123456789"), v->len, "TAT %s is not an integer", v->str);
    cr_expect_geq(v->len, 16, "TAT %s lost digits", v->str);
    long long tat = atoll(v->str);
    cr_expect(tat - now > 5000000 && tat - now <= 6000000, "TAT - now = %lld µs", tat - now);
    freeReplyObject(t);
    freeReplyObject(v);
    /* A key whose TAT has passed is gone. */
    cr_assert(check1(rl, pol, "short", 1, 1, 0, false).allowed);
    n = snprintf(key, sizeof(key), "herald:rl:%s:short", pol);
    cr_expect_eq(redis_int(rc, "EXISTS %b", key, (size_t)n), 1);
    usleep(1200 * 1000);
    cr_expect_eq(redis_int(rc, "EXISTS %b", key, (size_t)n), 0, "the key did not expire");
    cr_expect(check1(rl, pol, "short", 1, 1, 0, false).allowed);
    /* A denied check writes nothing. */
    n = snprintf(key, sizeof(key), "herald:rl:%s:never", pol);
    struct hd_rl_check d = {.cost = 2};
    item(&d, pol, "never", 1, 60, 0);
    run(rl, &d);
    cr_expect(!d.allowed);
    cr_expect_eq(redis_int(rc, "EXISTS %b", key, (size_t)n), 0);
    redisFree(rc);
    hd_ratelimit_stop(rl);
}

Test(ratelimit_redis, noscript_falls_back_to_eval, .timeout = 60)
{
    lock_redis(true); /* SCRIPT FLUSH: no one else is mid-check */
    struct hd_ratelimit *rl;
    start_up(&rl, redis_url(), HD_RL_REDIS_DOWN_DENY);
    char pol[32];
    uniq(pol, sizeof(pol), "ns");
    cr_assert(check1(rl, pol, "k", 1, 60, 1, false).allowed);
    redisContext *rc = inspect();
    freeReplyObject(redisCommand(rc, "SCRIPT FLUSH"));
    struct hd_rl_check c = check1(rl, pol, "k", 1, 60, 1, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
    cr_expect(c.allowed);
    c = check1(rl, pol, "k", 1, 60, 1, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
    cr_expect(!c.allowed, "the EVAL charged the same key");
    cr_expect(hd_ratelimit_redis_up(rl));
    redisFree(rc);
    hd_ratelimit_stop(rl);
}

/* ---- outage ---------------------------------------------------------------- */

static void find_services(void)
{
    const char *s = getenv("HERALD_SERVICES"), *src = getenv("HERALD_SOURCE_DIR");
    cr_assert((s && *s) || (src && *src), "neither HERALD_SERVICES nor HERALD_SOURCE_DIR is "
                                          "set: run the tests through ctest / scripts/test");
}

#define OUTAGE_CHECKS 6

/* Keeps batches of pipelined checks in flight on a node until told to stop:
 * the ones pending when Redis goes away must still be answered. */
struct flood {
    struct hd_ratelimit *rl;
    const char *policy;
    bool stop; /* atomic */
    int sent, by_redis, by_fallback;
};

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    enum { BATCH = 20 };
    struct hd_rl_check c[BATCH];
    sem_t sem;
    sem_init(&sem, 0, 0);
    while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
        for (int i = 0; i < BATCH; i++) {
            c[i] = (struct hd_rl_check){.cost = 1, .ctx = &sem, .done = count_done};
            item(&c[i], f->policy, "flood", 1000000, 1, 1000);
            hd_ratelimit_submit(f->rl, &c[i]);
        }
        for (int i = 0; i < BATCH; i++)
            sem_wait(&sem);
        for (int i = 0; i < BATCH; i++) {
            f->by_redis += c[i].decided_by == HD_RL_BY_REDIS;
            f->by_fallback += c[i].decided_by == HD_RL_BY_FALLBACK;
        }
        f->sent += BATCH;
    }
    sem_destroy(&sem);
    return NULL;
}

struct observed {
    int stop_rc, start_rc;
    bool down, recovered;
    uint64_t down_ms;
    struct hd_rl_check c[OUTAGE_CHECKS]; /* on the key charged full in Redis before */
    struct flood flood;                  /* node b, across the stop */
    uint64_t max_ms;
    char *metrics;
    char *health;
};

/* The outage window: no asserts in here, so Redis always comes back. */
static void outage(struct hd_ratelimit *a, struct hd_ratelimit *b, const char *pol,
                   struct observed *o)
{
    struct hd_test_outage w;
    o->flood = (struct flood){.rl = b, .policy = pol};
    pthread_t fl;
    bool flooding = pthread_create(&fl, NULL, flood_main, &o->flood) == 0;
    usleep(50 * 1000);
    hd_test_outage_begin(&w, "redis-stop", "redis-start", WATCHDOG_S);
    o->stop_rc = w.stop_rc;
    uint64_t t0 = hd_now_ms();
    o->down = wait_up(a, false, DOWN_WITHIN_MS) && wait_up(b, false, DOWN_WITHIN_MS);
    o->down_ms = hd_now_ms() - t0;
    __atomic_store_n(&o->flood.stop, true, __ATOMIC_RELAXED);
    if (flooding)
        pthread_join(fl, NULL);
    for (int i = 0; i < OUTAGE_CHECKS; i++) {
        o->c[i] = (struct hd_rl_check){.cost = 1};
        item(&o->c[i], pol, "k", 1, 60, 2);
        uint64_t ms = run(a, &o->c[i]);
        o->max_ms = ms > o->max_ms ? ms : o->max_ms;
    }
    o->metrics = metrics();
    struct hd_buf h = {0};
    hd_health_render(&h);
    hd_buf_append(&h, "", 1);
    o->health = h.data;

    hd_test_outage_end(&w);
    o->start_rc = w.start_rc;
    o->recovered = wait_up(a, true, RECOVER_WITHIN_MS) && wait_up(b, true, RECOVER_WITHIN_MS);
}

static void expect_health(const char *body, bool ok, bool degraded)
{
    json_error_t err;
    json_t *j = json_loads(body, 0, &err);
    cr_assert_not_null(j, "readyz body: %s", body);
    json_t *r = json_object_get(json_object_get(j, "checks"), "redis");
    cr_expect(json_is_boolean(json_object_get(r, "ok")), "%s", body);
    cr_expect_eq(json_is_true(json_object_get(r, "ok")), ok, "%s", body);
    cr_expect_eq(json_is_true(json_object_get(r, "degraded")), degraded, "%s", body);
    cr_expect(strstr(body, "unreachable"), "%s", body);
    json_decref(j);
}

/* Stops Redis under two nodes in @mode; checks the fallback, then recovery. */
static void expect_outage_fallback_then_recovery(enum hd_rl_redis_down mode)
{
    static const char *const names[] = {"local", "allow", "deny"};
    lock_redis(true);
    find_services();
    struct hd_ratelimit *a, *b;
    start_up(&a, redis_url(), mode);
    start_up(&b, redis_url(), mode);
    char pol[32];
    uniq(pol, sizeof(pol), names[mode]);
    /* Spend key k's burst (3) in Redis, through node a. */
    for (int i = 0; i < 4; i++) {
        struct hd_rl_check c = check1(a, pol, "k", 1, 60, 2, false);
        cr_assert_eq(c.decided_by, HD_RL_BY_REDIS);
        cr_assert_eq(c.allowed, i < 3, "pre-outage check %d", i);
    }

    struct observed o = {0};
    outage(a, b, pol, &o);

    cr_assert_eq(o.stop_rc, 0, "scripts/services redis-stop failed");
    cr_assert_eq(o.start_rc, 0, "scripts/services redis-start failed");
    cr_assert(o.down, "the outage was not noticed within %d ms", DOWN_WITHIN_MS);
    cr_expect_leq(o.max_ms, FALLBACK_MAX_MS, "a fallback check took %llu ms",
                  (unsigned long long)o.max_ms);
    fprintf(stderr,
            "outage %s: noticed in %llu ms; across the stop %d checks, %d by Redis, %d by "
            "the fallback\n",
            names[mode], (unsigned long long)o.down_ms, o.flood.sent, o.flood.by_redis,
            o.flood.by_fallback);
    cr_expect_gt(o.flood.sent, 0);
    cr_expect_gt(o.flood.by_redis, 0, "no check reached Redis before the stop");
    cr_expect_eq(o.flood.by_redis + o.flood.by_fallback, o.flood.sent,
                 "checks in flight across the stop: %d sent, %d by Redis, %d by the fallback",
                 o.flood.sent, o.flood.by_redis, o.flood.by_fallback);
    for (int i = 0; i < OUTAGE_CHECKS; i++) {
        const struct hd_rl_check *c = &o.c[i];
        const struct hd_gcra_verdict *v = &c->items[0].verdict;
        cr_expect_eq(c->decided_by, HD_RL_BY_FALLBACK, "outage check %d", i);
        cr_expect_eq(v->limit, 1);
        if (mode == HD_RL_REDIS_DOWN_LOCAL) {
            /* The local table never saw k: a fresh burst of 3, then denied. */
            cr_expect_eq(c->allowed, i < 3, "local fallback check %d", i);
            if (!c->allowed)
                cr_expect(v->retry_after_s > 59.0, "%f", v->retry_after_s);
        } else if (mode == HD_RL_REDIS_DOWN_ALLOW) {
            cr_expect(c->allowed, "allow fallback check %d", i);
            cr_expect_eq(v->remaining, 2);
        } else {
            cr_expect(!c->allowed, "deny fallback check %d", i);
            cr_expect_eq(c->denied, 0);
            cr_expect(v->retry_after_s == 1.0, "%f", v->retry_after_s);
        }
    }
    char want[128];
    int w = snprintf(want, sizeof(want), "herald_ratelimit_redis_fallback_total{mode=\"%s\"} ",
                     names[mode]);
    const char *at = strstr(o.metrics, want); /* node a's collector comes first */
    cr_expect(at && atoi(at + w) == OUTAGE_CHECKS, "want %s%d in %s", want, OUTAGE_CHECKS,
              o.metrics);
    cr_expect(strstr(o.metrics, "herald_ratelimit_redis_up 0\n"), "%s", o.metrics);
    cr_expect(!strstr(o.metrics, "herald_ratelimit_redis_errors_total 0\n"), "%s", o.metrics);
    expect_health(o.health, mode != HD_RL_REDIS_DOWN_DENY, mode != HD_RL_REDIS_DOWN_DENY);
    free(o.metrics);
    free(o.health);

    cr_assert(o.recovered, "not back on Redis within %d ms of redis-start", RECOVER_WITHIN_MS);
    /* Shared again, same instances: a's charges deny b. (Redis restarted
     * empty: no persistence.) */
    for (int i = 0; i < 3; i++) {
        struct hd_rl_check c = check1(a, pol, "k2", 1, 60, 2, false);
        cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
        cr_expect(c.allowed, "post-outage check %d", i);
    }
    struct hd_rl_check c = check1(b, pol, "k2", 1, 60, 2, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
    cr_expect(!c.allowed, "node b does not see node a's charges");
    struct hd_buf h = {0};
    hd_health_render(&h);
    hd_buf_append(&h, "", 1);
    cr_expect(strstr(h.data, "\"redis\":{\"ok\":true,\"degraded\":false"), "%s", h.data);
    hd_buf_free(&h);
    hd_ratelimit_stop(a);
    hd_ratelimit_stop(b);
}

Test(ratelimit_redis, outage_local_fallback_then_recovery, .fini = hd_test_outage_fini,
     .timeout = 120)
{
    expect_outage_fallback_then_recovery(HD_RL_REDIS_DOWN_LOCAL);
}

Test(ratelimit_redis, outage_allow_fallback_then_recovery, .fini = hd_test_outage_fini,
     .timeout = 120)
{
    expect_outage_fallback_then_recovery(HD_RL_REDIS_DOWN_ALLOW);
}

Test(ratelimit_redis, outage_deny_fallback_then_recovery, .fini = hd_test_outage_fini,
     .timeout = 120)
{
    expect_outage_fallback_then_recovery(HD_RL_REDIS_DOWN_DENY);
}

/* A Redis that never answers in time (a port nobody listens on is refused
 * at once; this one accepts and stays silent) gives the fallback within the
 * deadline, never a hang. */
Test(ratelimit_redis, silent_server_hits_the_deadline, .timeout = 60)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 16) == 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char url[64];
    snprintf(url, sizeof(url), "redis://:secret-pw@127.0.0.1:%d/3", ntohs(sa.sin_port));
    FILE *f;
    int saved = capture_begin(&f);
    struct hd_ratelimit *rl = start(url, HD_RL_REDIS_DOWN_DENY);
    uint64_t t0 = hd_now_ms();
    struct hd_rl_check c = check1(rl, "silent", "k", 1, 60, 1, false);
    uint64_t ms = hd_now_ms() - t0;
    cr_expect_eq(c.decided_by, HD_RL_BY_FALLBACK);
    cr_expect(!c.allowed);
    cr_expect(ms >= 200 && ms < 2000, "answered after %llu ms", (unsigned long long)ms);
    /* Down now: the next check does not wait at all. */
    t0 = hd_now_ms();
    c = check1(rl, "silent", "k", 1, 60, 1, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_FALLBACK);
    cr_expect_leq(hd_now_ms() - t0, FALLBACK_MAX_MS);
    cr_expect(!hd_ratelimit_redis_up(rl));
    struct hd_buf h = {0};
    hd_health_render(&h);
    hd_buf_append(&h, "", 1);
    cr_expect(strstr(h.data, "\"redis\":{\"ok\":false"), "%s", h.data);
    cr_expect(!strstr(h.data, "secret-pw"), "%s", h.data);
    hd_buf_free(&h);
    hd_ratelimit_stop(rl);
    close(fd);
    char *log = capture_end(f, saved);
    cr_expect(strstr(log, "redis unreachable, using deny fallback"), "%s", log);
    cr_expect(strstr(log, "no answer within 250 ms"), "%s", log);
    cr_expect(!strstr(log, "secret-pw"), "the log shows the password: %s", log);
    free(log);
}

/* AUTH (user and password, percent-decoded) and SELECT go first on the
 * connection; a wrong password is an outage whose log names AUTH, not the
 * password. */
Test(ratelimit_redis, auth_and_select_are_sent_first, .timeout = 60)
{
    lock_redis(false);
    redisContext *rc = inspect();
    const char *host = getenv("HERALD_TEST_REDIS_HOST"), *port = getenv("HERALD_TEST_REDIS_PORT");
    cr_assert(host && port, "HERALD_TEST_REDIS_HOST/PORT not set (scripts/services env)");
    char user[32], pol[32], url[256], bad_url[256];
    uniq(user, sizeof(user), "rluser");
    uniq(pol, sizeof(pol), "auth");
    redisReply *r = redisCommand(rc, "ACL SETUSER %s on >p@ss:w0rd ~* +@all", user);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER: %s", r ? r->str : "no reply");
    freeReplyObject(r);
    snprintf(url, sizeof(url), "redis://%s:p%%40ss%%3Aw0rd@%s:%s/5", user, host, port);
    snprintf(bad_url, sizeof(bad_url), "redis://%s:wrong-pw-42@%s:%s/5", user, host, port);

    struct hd_ratelimit *rl;
    start_up(&rl, url, HD_RL_REDIS_DOWN_DENY);
    struct hd_rl_check c = check1(rl, pol, "k", 1, 60, 1, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
    cr_expect(c.allowed);
    char key[96];
    int n = snprintf(key, sizeof(key), "herald:rl:%s:k", pol);
    cr_expect_eq(redis_int(rc, "EXISTS %b", key, (size_t)n), 0, "the key is in db 0");
    freeReplyObject(redisCommand(rc, "SELECT 5"));
    cr_expect_eq(redis_int(rc, "EXISTS %b", key, (size_t)n), 1, "the key is not in db 5");
    freeReplyObject(redisCommand(rc, "SELECT 0"));
    hd_ratelimit_stop(rl);

    FILE *f;
    int saved = capture_begin(&f);
    struct hd_ratelimit *bad = start(bad_url, HD_RL_REDIS_DOWN_DENY);
    c = check1(bad, pol, "k", 1, 60, 1, false);
    bool up = wait_up(bad, true, 500);
    hd_ratelimit_stop(bad);
    char *log = capture_end(f, saved);
    cr_expect_eq(c.decided_by, HD_RL_BY_FALLBACK);
    cr_expect(!up);
    cr_expect(strstr(log, "AUTH: WRONGPASS"), "%s", log);
    cr_expect(!strstr(log, "wrong-pw-42"), "the log shows the password: %s", log);
    free(log);
    freeReplyObject(redisCommand(rc, "ACL DELUSER %s", user));
    redisFree(rc);
}

/* Checks posted before the first connect completes wait for it (they carry
 * the script: it is not loaded yet); checks still pending when the actor
 * stops are answered by the fallback before hd_ratelimit_stop returns. */
Test(ratelimit_redis, first_connect_and_stop_answer_every_check, .timeout = 60)
{
    lock_redis(false);
    char pol[32];
    uniq(pol, sizeof(pol), "early");
    struct hd_ratelimit *rl = start(redis_url(), HD_RL_REDIS_DOWN_DENY);
    struct hd_rl_check c = check1(rl, pol, "k", 1, 60, 0, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
    cr_expect(c.allowed);
    hd_ratelimit_stop(rl);

    enum { N = 200 };
    static struct hd_rl_check p[N];
    sem_t sem;
    sem_init(&sem, 0, 0);
    rl = start(redis_url(), HD_RL_REDIS_DOWN_DENY);
    for (int i = 0; i < N; i++) {
        p[i] = (struct hd_rl_check){.cost = 1, .ctx = &sem, .done = count_done};
        item(&p[i], pol, "late", 1000, 60, 1000);
        hd_ratelimit_submit(rl, &p[i]);
    }
    hd_ratelimit_stop(rl);
    int answered = 0, by_fallback = 0;
    while (sem_trywait(&sem) == 0)
        answered++;
    for (int i = 0; i < N; i++)
        by_fallback += p[i].decided_by == HD_RL_BY_FALLBACK;
    cr_expect_eq(answered, N, "%d of %d checks answered by the time stop returned", answered, N);
    cr_expect_gt(by_fallback, 0, "no check was pending at the stop (timing)");
    sem_destroy(&sem);
}

/* Blocks the test Redis for @ms with a busy script (Redis serves no one
 * meanwhile), then returns. The iteration cap bounds it should TIME ever be
 * frozen inside scripts. */
static void *stall_redis(void *arg)
{
    redisContext *rc = arg;
    freeReplyObject(redisCommand(
        rc, "EVAL %s 0 %d",
        "local s = redis.call('TIME') local t0 = s[1] * 1e6 + s[2] "
        "for i = 1, 300000000 do if i % 10000 == 0 then local t = redis.call('TIME') "
        "if t[1] * 1e6 + t[2] - t0 > tonumber(ARGV[1]) * 1000 then return i end end end "
        "return 0",
        800));
    return NULL;
}

/* A connected Redis that stops answering (a long script blocks it): the
 * pending check is answered by the fallback once the 250 ms deadline
 * passes, later ones at once, and the instance is back on Redis after. */
Test(ratelimit_redis, stalled_redis_hits_the_deadline_then_recovers, .timeout = 60)
{
    lock_redis(true); /* the stall blocks everyone */
    struct hd_ratelimit *rl;
    start_up(&rl, redis_url(), HD_RL_REDIS_DOWN_DENY);
    char pol[32];
    uniq(pol, sizeof(pol), "stall");
    cr_assert_eq(check1(rl, pol, "k", 100, 60, 10, false).decided_by, HD_RL_BY_REDIS);
    redisContext *rc = inspect();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stall_redis, rc), 0);
    usleep(100 * 1000); /* the script runs */
    uint64_t t0 = hd_now_ms();
    struct hd_rl_check c = check1(rl, pol, "k", 100, 60, 10, false);
    uint64_t first_ms = hd_now_ms() - t0;
    t0 = hd_now_ms();
    struct hd_rl_check d = check1(rl, pol, "k", 100, 60, 10, false);
    uint64_t second_ms = hd_now_ms() - t0;
    bool down = !hd_ratelimit_redis_up(rl);
    pthread_join(th, NULL);
    redisFree(rc);
    cr_expect_eq(c.decided_by, HD_RL_BY_FALLBACK);
    cr_expect(!c.allowed, "deny fallback");
    cr_expect(first_ms >= 200 && first_ms < 2000, "answered after %llu ms",
              (unsigned long long)first_ms);
    cr_expect_eq(d.decided_by, HD_RL_BY_FALLBACK);
    cr_expect_leq(second_ms, FALLBACK_MAX_MS);
    cr_expect(down);
    cr_assert(wait_up(rl, true, RECOVER_WITHIN_MS), "not back on Redis after the stall");
    c = check1(rl, pol, "k", 100, 60, 10, false);
    cr_expect_eq(c.decided_by, HD_RL_BY_REDIS);
    cr_expect(c.allowed);
    hd_ratelimit_stop(rl);
}
