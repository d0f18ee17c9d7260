/* GCRA limiter core (src/actors/gcra.c), on a fake clock. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herald/core.h"
#include "herald/gcra.h"

#include <math.h>
#include <sodium.h>

static const struct hd_gcra_rule ten_per_min_burst5 = {.limit = 10, .window_s = 60, .burst = 5};

static struct hd_gcra_verdict check(struct hd_gcra_table *t, const char *key,
                                    const struct hd_gcra_rule *r, int cost, double now)
{
    struct hd_gcra_verdict v;
    hd_gcra_check(t, key, strlen(key), r, cost, now, &v);
    return v;
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

Test(gcra, burst_plus_one_then_denied)
{
    struct hd_gcra_table *t = hd_gcra_table_new(16);
    const double now = 1000.0; /* T = 6 s, tau = 30 s */
    for (int i = 0; i < 6; i++) {
        struct hd_gcra_verdict v = check(t, "k", &ten_per_min_burst5, 1, now);
        cr_assert(v.allowed, "request %d", i);
        cr_expect_eq(v.limit, 10);
        cr_expect_eq(v.remaining, 5 - i);
        cr_expect(NEAR(v.reset_s, 6.0 * (i + 1)), "reset %f", v.reset_s);
        cr_expect_eq(v.retry_after_s, 0.0);
    }
    struct hd_gcra_verdict v = check(t, "k", &ten_per_min_burst5, 1, now);
    cr_expect_not(v.allowed);
    cr_expect_eq(v.remaining, 0);
    cr_expect(NEAR(v.retry_after_s, 6.0), "retry_after %f", v.retry_after_s);
    cr_expect(NEAR(v.reset_s, 36.0));
    /* Denials do not consume: asking again later gives a shorter wait. */
    v = check(t, "k", &ten_per_min_burst5, 1, now + 2.5);
    cr_expect_not(v.allowed);
    cr_expect(NEAR(v.retry_after_s, 3.5), "retry_after %f", v.retry_after_s);
    hd_gcra_table_free(t);
}

Test(gcra, recovers_after_emission_interval)
{
    struct hd_gcra_table *t = hd_gcra_table_new(16);
    const struct hd_gcra_rule r = {.limit = 1, .window_s = 10, .burst = 0};
    cr_expect(check(t, "k", &r, 1, 50.0).allowed);
    struct hd_gcra_verdict v = check(t, "k", &r, 1, 55.0);
    cr_expect_not(v.allowed);
    cr_expect(NEAR(v.retry_after_s, 5.0));
    v = check(t, "k", &r, 1, 59.999);
    cr_expect_not(v.allowed);
    cr_expect(NEAR(v.retry_after_s, 0.001), "retry_after %f", v.retry_after_s);
    cr_expect(check(t, "k", &r, 1, 60.0).allowed);
    cr_expect_not(check(t, "k", &r, 1, 60.0).allowed);
    /* Long idle: back to a full burst, not more. */
    const struct hd_gcra_rule b = ten_per_min_burst5;
    int n = 0;
    for (int i = 0; i < 6; i++)
        n += check(t, "b", &b, 1, 100.0).allowed;
    cr_expect_eq(n, 6);
    v = check(t, "b", &b, 1, 100.0 + 3600);
    cr_expect(v.allowed);
    cr_expect_eq(v.remaining, 5);
    hd_gcra_table_free(t);
}

/* Requests every @step seconds for @span seconds; returns how many passed. */
static int drive(struct hd_gcra_table *t, const struct hd_gcra_rule *r, double start, double span,
                 double step)
{
    int allowed = 0;
    long n = (long)(span / step);
    for (long i = 0; i < n; i++)
        allowed += check(t, "drive", r, 1, start + (double)i * step).allowed;
    return allowed;
}

Test(gcra, rate_over_a_simulated_minute_matches_limit)
{
    const struct hd_gcra_rule r0 = {.limit = 100, .window_s = 60, .burst = 0};
    const struct hd_gcra_rule r10 = {.limit = 100, .window_s = 60, .burst = 10};
    const struct hd_gcra_rule slow = {.limit = 7, .window_s = 60, .burst = 2};
    struct hd_gcra_table *t = hd_gcra_table_new(16);
    /* Step 1 ms, starting off the emission grid: 100 in 60 s; a burst adds its
     * size once (burst + 1 at once, then one per T from the first T on). */
    cr_expect_eq(drive(t, &r0, 10.0003, 60.0, 0.001), 100);
    hd_gcra_table_free(t);
    t = hd_gcra_table_new(16);
    cr_expect_eq(drive(t, &r10, 10.0003, 60.0, 0.001), 110);
    hd_gcra_table_free(t);
    /* Over ten minutes the burst is a one-off: 1000 + 10. */
    t = hd_gcra_table_new(16);
    cr_expect_eq(drive(t, &r10, 10.0003, 600.0, 0.01), 1010);
    hd_gcra_table_free(t);
    /* A window that does not divide evenly: 7/min over 10 min = 70, + burst 2. */
    t = hd_gcra_table_new(16);
    int n = drive(t, &slow, 5.0003, 600.0, 0.01);
    cr_expect_eq(n, 72);
    hd_gcra_table_free(t);
}

Test(gcra, cost_above_one)
{
    struct hd_gcra_table *t = hd_gcra_table_new(16);
    const struct hd_gcra_rule *r = &ten_per_min_burst5; /* 6 units at once */
    struct hd_gcra_verdict v = check(t, "k", r, 4, 0.0);
    cr_expect(v.allowed);
    cr_expect_eq(v.remaining, 2);
    v = check(t, "k", r, 3, 0.0);
    cr_expect_not(v.allowed);
    cr_expect_eq(v.remaining, 2);
    cr_expect(NEAR(v.retry_after_s, 6.0), "retry_after %f", v.retry_after_s);
    cr_expect(check(t, "k", r, 2, 0.0).allowed);
    cr_expect_not(check(t, "k", r, 1, 0.0).allowed);
    /* More than burst + 1 never fits; the answer says how far out of reach. */
    v = check(t, "fresh", r, 7, 0.0);
    cr_expect_not(v.allowed);
    cr_expect(NEAR(v.retry_after_s, 6.0));
    cr_expect_eq(hd_gcra_table_count(t), 1);
    /* Cost 0 reports without consuming or storing. */
    v = check(t, "peek", r, 0, 0.0);
    cr_expect(v.allowed);
    cr_expect_eq(v.remaining, 6);
    cr_expect_eq(hd_gcra_table_count(t), 1);
    v = check(t, "k", r, 0, 0.0);
    cr_expect(v.allowed);
    cr_expect_eq(v.remaining, 0);
    cr_expect(NEAR(v.reset_s, 36.0));
    hd_gcra_table_free(t);
}

Test(gcra, keys_are_independent)
{
    struct hd_gcra_table *t = hd_gcra_table_new(16);
    const struct hd_gcra_rule r = {.limit = 1, .window_s = 60, .burst = 0};
    cr_expect(check(t, "ip:1.2.3.4", &r, 1, 0).allowed);
    cr_expect_not(check(t, "ip:1.2.3.4", &r, 1, 0).allowed);
    cr_expect(check(t, "ip:1.2.3.5", &r, 1, 0).allowed);
    cr_expect(check(t, "ip:1.2.3.", &r, 1, 0).allowed);
    struct hd_gcra_verdict v;
    hd_gcra_check(t, "a\0b", 3, &r, 1, 0, &v);
    cr_expect(v.allowed);
    hd_gcra_check(t, "a\0c", 3, &r, 1, 0, &v);
    cr_expect(v.allowed, "bytes after a NUL are part of the key");
    hd_gcra_check(t, "", 0, &r, 1, 0, &v);
    cr_expect(v.allowed);
    hd_gcra_check(t, "", 0, &r, 1, 0, &v);
    cr_expect_not(v.allowed);
    cr_expect_eq(hd_gcra_table_count(t), 6);
    hd_gcra_table_free(t);
}

Test(gcra, sweep_drops_only_expired_keys)
{
    struct hd_gcra_table *t = hd_gcra_table_new(16);
    const struct hd_gcra_rule *r = &ten_per_min_burst5;
    check(t, "one", r, 1, 100.0); /* TAT 106 */
    for (int i = 0; i < 5; i++)
        check(t, "five", r, 1, 100.0); /* TAT 130 */
    cr_expect_eq(hd_gcra_table_count(t), 2);
    cr_expect_eq(hd_gcra_table_sweep(t, 105.9), 0);
    cr_expect_eq(hd_gcra_table_sweep(t, 106.0), 1);
    cr_expect_eq(hd_gcra_table_count(t), 1);
    /* "five" kept its state: one request left in its burst. */
    struct hd_gcra_verdict v = check(t, "five", r, 0, 106.0);
    cr_expect_eq(v.remaining, 2); /* TAT 130, now 106: 24 s ahead of 36 s room */
    cr_expect_eq(hd_gcra_table_sweep(t, 129.0), 0);
    cr_expect_eq(hd_gcra_table_sweep(t, 130.0), 1);
    cr_expect_eq(hd_gcra_table_count(t), 0);
    cr_expect_eq(hd_gcra_table_sweep(t, 1e6), 0);
    hd_gcra_table_free(t);
}

Test(gcra, keys_over_the_inline_cap)
{
    struct hd_gcra_table *t = hd_gcra_table_new(64);
    const struct hd_gcra_rule r = {.limit = 1, .window_s = 60, .burst = 0};
    char big[4096];
    memset(big, 'x', sizeof(big));
    struct hd_gcra_verdict v;
    size_t lens[] = {
        HD_GCRA_KEY_INLINE - 1, HD_GCRA_KEY_INLINE, HD_GCRA_KEY_INLINE + 1, 160, 161, sizeof(big)};
    for (size_t i = 0; i < HD_ARRAY_LEN(lens); i++) {
        hd_gcra_check(t, big, lens[i], &r, 1, 0, &v);
        cr_expect(v.allowed, "len %zu", lens[i]);
        hd_gcra_check(t, big, lens[i], &r, 1, 0, &v);
        cr_expect_not(v.allowed, "len %zu", lens[i]);
    }
    /* Long keys differing only in their last byte are different keys. */
    big[sizeof(big) - 1] = 'y';
    hd_gcra_check(t, big, sizeof(big), &r, 1, 0, &v);
    cr_expect(v.allowed);
    /* A 32-byte verbatim key is not confused with a digest. */
    unsigned char digest[32];
    crypto_generichash(digest, sizeof(digest), (const unsigned char *)big, sizeof(big), NULL, 0);
    hd_gcra_check(t, (const char *)digest, sizeof(digest), &r, 1, 0, &v);
    cr_expect(v.allowed);
    cr_expect_eq(hd_gcra_table_count(t), HD_ARRAY_LEN(lens) + 2);
    hd_gcra_table_free(t);
}

Test(gcra, expired_keys_are_reused_lazily_when_full)
{
    struct hd_gcra_table *t = hd_gcra_table_new(100);
    const struct hd_gcra_rule r = {.limit = 1, .window_s = 10, .burst = 0};
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "old%d", i);
        cr_expect(check(t, key, &r, 1, 0).allowed);
    }
    cr_expect_eq(hd_gcra_table_count(t), 100);
    /* Everything expired at 10: new keys get their own buckets, no sweep call. */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "new%d", i);
        cr_expect(check(t, key, &r, 1, 20).allowed);
        cr_expect_not(check(t, key, &r, 1, 20).allowed, "new%d is in its own bucket", i);
    }
    cr_expect_leq(hd_gcra_table_count(t), 100);
    hd_gcra_table_free(t);
}

/* Reference GCRA for one key, for the randomized comparison. */
struct ref {
    double tat;
};

Test(gcra, randomized_against_reference)
{
    /* 45 live keys in a table of 50 (63 slots): long clusters, many shifts. */
    struct hd_gcra_table *t = hd_gcra_table_new(50);
    const struct hd_gcra_rule r = {.limit = 10, .window_s = 60, .burst = 2}; /* T = 6 */
    struct ref refs[45];
    for (size_t i = 0; i < HD_ARRAY_LEN(refs); i++)
        refs[i].tat = -1e9;
    srand(12345);
    double now = 0;
    char key[32];
    for (int step = 0; step < 200000; step++) {
        now += (rand() % 4) * 0.5;
        int k = rand() % 45, cost = rand() % 3;
        snprintf(key, sizeof(key), "key-%d", k);
        struct hd_gcra_verdict v = check(t, key, &r, cost, now);
        double base = refs[k].tat > now ? refs[k].tat : now;
        bool ok = base + 6.0 * cost - now <= 18.0;
        if (ok)
            refs[k].tat = base + 6.0 * cost;
        cr_assert_eq(v.allowed, ok, "step %d key %d", step, k);
        if (rand() % 1000 == 0)
            hd_gcra_table_sweep(t, now);
        cr_assert_leq(hd_gcra_table_count(t), 50);
    }
    hd_gcra_table_free(t);
}

static double seconds_since(struct timespec a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

Test(gcra, flood_of_a_million_keys_stays_bounded, .timeout = 60)
{
    const size_t max = 100000;
    struct hd_gcra_table *t = hd_gcra_table_new(max);
    const struct hd_gcra_rule *r = &ten_per_min_burst5;
    /* The victim spends its burst before the flood. */
    for (int i = 0; i < 6; i++)
        cr_assert(check(t, "victim", r, 1, 0).allowed);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char key[64];
    size_t allowed = 0;
    for (size_t i = 0; i < 1000000; i++) {
        snprintf(key, sizeof(key), "login:ip:10.%zu.%zu.%zu", i >> 16, (i >> 8) & 255, i & 255);
        struct hd_gcra_verdict v = check(t, key, r, 1, 1.0); /* all within one second */
        allowed += v.allowed;
    }
    double secs = seconds_since(t0);
    size_t bytes = hd_gcra_table_bytes(t);
    cr_expect_leq(hd_gcra_table_count(t), max);
    cr_expect_leq(bytes, HD_GCRA_TABLE_BYTES_MAX(max));
    cr_expect_leq(bytes, max * 128 + 4096);
    /* max - 1 keys (beside the victim) got their own bucket; the keys first
     * seen after the table filled shared one burst of 6. */
    cr_expect_eq(allowed, max - 1 + 6);
    /* The flood neither reset nor evicted the victim's bucket. */
    struct hd_gcra_verdict v = check(t, "victim", r, 1, 1.0);
    cr_expect_not(v.allowed);
    cr_expect(NEAR(v.retry_after_s, 5.0));
    printf("gcra flood: 1,000,000 keys in %.2f s, %zu keys held, %zu bytes, %.1f bytes/key\n", secs,
           hd_gcra_table_count(t), bytes, (double)bytes / (double)max);
    cr_expect_lt(secs, 10.0);

    /* A rolling flood (clock moves, keys expire): the table recycles slots.
     * 60/min burst 5: a key lives 6 s after its burst; 10,000 new keys/s keep
     * about 60,000 alive, so nearly all get their own bucket. */
    const struct hd_gcra_rule roll = {.limit = 60, .window_s = 60, .burst = 5};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t own = 0;
    for (size_t i = 0; i < 1000000; i++) {
        snprintf(key, sizeof(key), "roll:%zu", i);
        double now = 100.0 + (double)i * 0.0001;
        check(t, key, &roll, 1, now);
        v = check(t, key, &roll, 5, now);
        own += v.allowed; /* only its own bucket still has 5 left */
        cr_assert_leq(hd_gcra_table_count(t), max);
    }
    secs = seconds_since(t0);
    printf("gcra rolling flood: 1,000,000 keys in %.2f s, %zu own buckets, %zu held\n", secs, own,
           hd_gcra_table_count(t));
    cr_expect_eq(own, 1000000);
    cr_expect_leq(hd_gcra_table_bytes(t), HD_GCRA_TABLE_BYTES_MAX(max));
    cr_expect_lt(secs, 20.0);
    hd_gcra_table_free(t);
}

Test(gcra, bad_sizes_and_overflow_buckets_per_rule)
{
    cr_expect_null(hd_gcra_table_new(0));
    hd_gcra_table_free(NULL);
    struct hd_gcra_table *t = hd_gcra_table_new(1);
    const struct hd_gcra_rule one = {.limit = 1, .window_s = 60, .burst = 0};
    cr_expect(check(t, "held", &one, 1, 0).allowed);
    /* Full: each rule gets its own overflow bucket... */
    char key[32];
    for (int i = 0; i < HD_GCRA_OVERFLOW_RULES; i++) {
        struct hd_gcra_rule r = {.limit = 1 + i, .window_s = 60, .burst = 0};
        snprintf(key, sizeof(key), "a%d", i);
        cr_expect(check(t, key, &r, 1, 0).allowed, "rule %d", i);
        snprintf(key, sizeof(key), "b%d", i);
        cr_expect_not(check(t, key, &r, 1, 0).allowed, "rule %d", i);
    }
    /* ...and rules past HD_GCRA_OVERFLOW_RULES share one: conservative, bounded. */
    struct hd_gcra_rule extra = {.limit = 1000, .window_s = 60, .burst = 0};
    cr_expect_not(check(t, "c", &extra, 1, 0).allowed);
    cr_expect_eq(hd_gcra_table_count(t), 1);
    hd_gcra_table_free(t);
}

Test(gcra_rule, parses_the_documented_forms)
{
    struct {
        const char *text;
        int rc, limit, window_s, burst;
    } cases[] = {
        {"off", 0, 0, 0, 0},
        {" OFF ", 0, 0, 0, 0},
        {"10/min burst 5", 1, 10, 60, 5},
        {"300/5min burst 30", 1, 300, 300, 30},
        {"100/hour", 1, 100, 3600, 0},
        {"100/hours burst 10", 1, 100, 3600, 10},
        {"2/30s", 1, 2, 30, 0},
        {"1/day", 1, 1, 86400, 0},
        {"7 / 2 h burst 3", 1, 7, 7200, 3},
        {"5/sec", 1, 5, 1, 0},
        {"5/366d", 1, 5, 31622400, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hd_gcra_rule r = {-1, -1, -1};
        const char *why = NULL;
        int rc = hd_gcra_rule_parse(cases[i].text, &r, &why);
        cr_expect_eq(rc, cases[i].rc, "%s: rc %d (%s)", cases[i].text, rc, why ? why : "");
        cr_expect(r.limit == cases[i].limit && r.window_s == cases[i].window_s &&
                      r.burst == cases[i].burst,
                  "%s: got %d/%ds burst %d", cases[i].text, r.limit, r.window_s, r.burst);
    }
}

Test(gcra_rule, refuses_malformed_and_out_of_range_rules)
{
    const char *bad[] = {"",
                         "on",
                         "10",
                         "0/min",
                         "-1/min",
                         "10/",
                         "10/week",
                         "10/0min",
                         "10/367d",
                         "10/min burst",
                         "10/min burst -1",
                         "10/min burst 100001",
                         "10/min burst 5 x",
                         "10/min,burst 5",
                         "99999999999/min",
                         "10/m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hd_gcra_rule r;
        const char *why = NULL;
        cr_expect_eq(hd_gcra_rule_parse(bad[i], &r, &why), -EINVAL, "%s was accepted", bad[i]);
        cr_expect(why && *why, "%s: no reason", bad[i]);
    }
}
