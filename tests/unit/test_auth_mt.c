/* The auth worker pool under concurrent submitters: every job's done runs
 * exactly once with the right answer, an unknown user pays one hash, a weaker
 * hash is upgraded, and stop with jobs queued cancels them cleanly. Runs under
 * TSan too (tests/tsan_shim), so only Test/.init/.timeout and cr_assert*. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "herald/auth.h"
#include "herald/buf.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/metrics.h"
#include "herald/password.h"

#define MAX_JOBS 100

static const char good_pw[] = "correct horse battery staple";
static const char bad_pw[] = "correct horse battery stapler";

/* What a done callback saw; written on a worker, read by the test after
 * an acquire load of `fired` (or after hd_auth_stop joined the workers). */
struct slot {
    int fired;
    bool ok, needs_rehash;
    int error;
    bool has_hash, has_new_hash, password_wiped;
    char hash[crypto_pwhash_STRBYTES];
    char new_hash[crypto_pwhash_STRBYTES];
};

static struct slot slots[MAX_JOBS];
static int done_count;

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    memset(slots, 0, sizeof(slots));
    done_count = 0;
}

TestSuite(auth, .init = setup);

static struct hd_config config(int workers, int ops, int mem_kib)
{
    struct hd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.auth.hash_workers = workers;
    cfg.auth.argon2_ops = ops;
    cfg.auth.argon2_mem_kib = mem_kib;
    return cfg;
}

/* Worker thread. */
static void on_done(struct hd_auth_job *job)
{
    struct slot *s = job->ctx;
    s->ok = job->ok;
    s->needs_rehash = job->needs_rehash;
    s->error = job->error;
    s->password_wiped = job->password == NULL && job->password_len == 0;
    s->has_hash = job->hash != NULL;
    if (job->hash)
        snprintf(s->hash, sizeof(s->hash), "%s", job->hash);
    s->has_new_hash = job->new_hash != NULL;
    if (job->new_hash)
        snprintf(s->new_hash, sizeof(s->new_hash), "%s", job->new_hash);
    hd_auth_job_free(job);
    __atomic_add_fetch(&s->fired, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&done_count, 1, __ATOMIC_RELEASE);
}

static struct hd_auth_job *job_for(enum hd_auth_job_kind kind, const char *pw, const char *hash,
                                   int slot)
{
    struct hd_auth_job *job = hd_auth_job_new(kind);
    hd_auth_job_set_password(job, pw, strlen(pw));
    job->hash = hash ? hd_strdup(hash) : NULL;
    job->done = on_done;
    job->ctx = &slots[slot];
    return job;
}

static bool wait_done(int n, int timeout_ms)
{
    uint64_t deadline = hd_now_ms() + (uint64_t)timeout_ms;
    while (__atomic_load_n(&done_count, __ATOMIC_ACQUIRE) < n && hd_now_ms() < deadline)
        usleep(200);
    return __atomic_load_n(&done_count, __ATOMIC_ACQUIRE) >= n;
}

/* ---- 50 jobs from 4 threads ------------------------------------------------ */

#define N_MIXED 50
static char known_hash[crypto_pwhash_STRBYTES]; /* of good_pw, cheap costs */

static void mixed_password(int i, char *out, size_t cap)
{
    snprintf(out, cap, "password number %02d", i);
}

/* i % 4: 0 hash, 1 right password, 2 wrong password, 3 unknown user. */
static struct hd_auth_job *mixed_job(int i)
{
    char pw[32];
    switch (i % 4) {
    case 0:
        mixed_password(i, pw, sizeof(pw));
        return job_for(HD_AUTH_HASH, pw, NULL, i);
    case 1:
        return job_for(HD_AUTH_VERIFY, good_pw, known_hash, i);
    case 2:
        return job_for(HD_AUTH_VERIFY, bad_pw, known_hash, i);
    default:
        return job_for(HD_AUTH_VERIFY, good_pw, NULL, i);
    }
}

struct submitter {
    struct hd_auth *auth;
    int first;
};

static void *submit_every_fourth(void *arg)
{
    struct submitter *s = arg;
    for (int i = s->first; i < N_MIXED; i += 4)
        hd_auth_submit(s->auth, mixed_job(i));
    return NULL;
}

static void expect_mixed_result(int i)
{
    const struct slot *s = &slots[i];
    cr_expect_eq(s->fired, 1, "job %d done %d times", i, s->fired);
    cr_expect_eq(s->error, 0, "job %d", i);
    cr_expect(s->password_wiped, "job %d", i);
    cr_expect_not(s->has_new_hash, "job %d", i);
    if (i % 4 == 0) {
        char pw[32];
        mixed_password(i, pw, sizeof(pw));
        cr_assert(s->has_hash, "job %d", i);
        cr_expect(hd_password_verify(s->hash, pw, strlen(pw)), "job %d", i);
        cr_expect_not(hd_password_verify(s->hash, good_pw, strlen(good_pw)), "job %d", i);
    } else {
        cr_expect_eq(s->ok, i % 4 == 1, "job %d", i);
        cr_expect_not(s->needs_rehash, "job %d", i);
    }
}

static void expect_metrics(void)
{
    struct hd_buf b = {0};
    hd_metrics_render(&b);
    hd_buf_append(&b, "", 1);
    cr_expect_not_null(strstr(b.data, "herald_auth_workers 2\n"));
    cr_expect_not_null(strstr(b.data, "herald_auth_jobs_total{kind=\"hash\",outcome=\"ok\"} 13\n"));
    cr_expect_not_null(
        strstr(b.data, "herald_auth_jobs_total{kind=\"verify\",outcome=\"unknown_user\"} 12\n"));
    cr_expect_not_null(
        strstr(b.data, "herald_auth_jobs_total{kind=\"verify\",outcome=\"mismatch\"} 12\n"));
    cr_expect_not_null(
        strstr(b.data, "herald_auth_job_duration_seconds_count{kind=\"verify\"} 37"));
    hd_buf_free(&b);
}

Test(auth, fifty_jobs_from_four_threads_each_done_once, .timeout = 120)
{
    const struct hd_password_params cheap = {1, 8192};
    cr_assert_eq(hd_password_hash(good_pw, strlen(good_pw), &cheap, known_hash), 0);
    struct hd_config cfg = config(2, 1, 8);
    struct hd_auth *a = hd_auth_start(&cfg);
    cr_assert_not_null(a);
    cr_expect_eq(hd_auth_workers(a), 2);

    pthread_t t[4];
    struct submitter args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct submitter){a, i};
        cr_assert_eq(pthread_create(&t[i], NULL, submit_every_fourth, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert(wait_done(N_MIXED, 60000), "only %d of %d jobs done",
              __atomic_load_n(&done_count, __ATOMIC_ACQUIRE), N_MIXED);
    expect_metrics();
    hd_auth_stop(a); /* joins the workers: no done can still be running */

    cr_expect_eq(done_count, N_MIXED);
    for (int i = 0; i < N_MIXED; i++)
        expect_mixed_result(i);
}

/* ---- rehash on login --------------------------------------------------------- */

static void verify_one(struct hd_auth *a, const char *pw, const char *hash, int slot)
{
    int before = __atomic_load_n(&done_count, __ATOMIC_ACQUIRE);
    hd_auth_submit(a, job_for(HD_AUTH_VERIFY, pw, hash, slot));
    cr_assert(wait_done(before + 1, 30000), "verify %d never done", slot);
}

Test(auth, verify_upgrades_a_weaker_or_older_hash, .timeout = 120)
{
    const struct hd_password_params weak = {1, 8192};
    const struct hd_password_params current = {2, 16384};
    char weak_hash[crypto_pwhash_STRBYTES], current_hash[crypto_pwhash_STRBYTES];
    char argon2i_hash[crypto_pwhash_STRBYTES];
    cr_assert_eq(hd_password_hash(good_pw, strlen(good_pw), &weak, weak_hash), 0);
    cr_assert_eq(hd_password_hash(good_pw, strlen(good_pw), &current, current_hash), 0);
    cr_assert_eq(crypto_pwhash_str_alg(argon2i_hash, good_pw, strlen(good_pw), 3, 16384,
                                       crypto_pwhash_ALG_ARGON2I13),
                 0);
    struct hd_config cfg = config(2, 2, 16);
    struct hd_auth *a = hd_auth_start(&cfg);
    cr_assert_not_null(a);

    verify_one(a, good_pw, weak_hash, 0);
    verify_one(a, good_pw, argon2i_hash, 1);
    verify_one(a, good_pw, current_hash, 2);
    verify_one(a, bad_pw, weak_hash, 3);
    hd_auth_stop(a);

    for (int i = 0; i < 2; i++) {
        cr_expect(slots[i].ok && slots[i].needs_rehash, "job %d", i);
        cr_assert(slots[i].has_new_hash, "job %d", i);
        cr_expect_eq(strncmp(slots[i].new_hash, "$argon2id$", 10), 0);
        cr_expect(hd_password_verify(slots[i].new_hash, good_pw, strlen(good_pw)));
        cr_expect_not(hd_password_needs_rehash(slots[i].new_hash, &current));
    }
    cr_expect(slots[2].ok);
    cr_expect_not(slots[2].needs_rehash);
    cr_expect_not(slots[2].has_new_hash);
    cr_expect_not(slots[3].ok, "a wrong password is never upgraded");
    cr_expect_not(slots[3].needs_rehash);
    cr_expect_not(slots[3].has_new_hash);
}

/* ---- no timing oracle ------------------------------------------------------------ */

/* Costs high enough (8 MiB) that a hash dwarfs the queue round trip, low
 * enough for a quick test. Only asserts that the unknown user's verify
 * really hashed: its total time is at least a quarter of the wrong-password
 * one's, measured alternately in the same process. No speed target. */
Test(auth, unknown_user_costs_a_hash, .timeout = 120)
{
    const struct hd_password_params p = {2, 8192 * 1024};
    char hash[crypto_pwhash_STRBYTES];
    cr_assert_eq(hd_password_hash(good_pw, strlen(good_pw), &p, hash), 0);
    struct hd_config cfg = config(1, 2, 8192);
    struct hd_auth *a = hd_auth_start(&cfg);
    cr_assert_not_null(a);

    uint64_t known_us = 0, unknown_us = 0;
    for (int i = 0; i < 10; i += 2) {
        uint64_t t = hd_now_us();
        verify_one(a, bad_pw, hash, i);
        known_us += hd_now_us() - t;
        t = hd_now_us();
        verify_one(a, bad_pw, NULL, i + 1);
        unknown_us += hd_now_us() - t;
    }
    hd_auth_stop(a);
    for (int i = 0; i < 10; i++) {
        cr_expect_eq(slots[i].fired, 1);
        cr_expect_not(slots[i].ok, "job %d", i);
        cr_expect_eq(slots[i].error, 0);
    }
    fprintf(stderr, "5 wrong-password verifies %.1f ms, 5 unknown-user verifies %.1f ms\n",
            known_us / 1e3, unknown_us / 1e3);
    cr_expect_geq(unknown_us * 4, known_us, "unknown %llu us vs known %llu us: no hash ran?",
                  (unsigned long long)unknown_us, (unsigned long long)known_us);
}

/* ---- stop with jobs queued ----------------------------------------------------- */

#define N_STOP 100

Test(auth, stop_with_jobs_in_flight_cancels_the_rest, .timeout = 120)
{
    struct hd_config cfg = config(2, 2, 8192);
    struct hd_auth *a = hd_auth_start(&cfg);
    cr_assert_not_null(a);
    for (int i = 0; i < N_STOP; i++)
        hd_auth_submit(a, job_for(HD_AUTH_HASH, good_pw, NULL, i));
    hd_auth_stop(a); /* every done has run when it returns */

    cr_expect_eq(done_count, N_STOP);
    int cancelled = 0, hashed = 0;
    for (int i = 0; i < N_STOP; i++) {
        cr_expect_eq(slots[i].fired, 1, "job %d done %d times", i, slots[i].fired);
        cr_expect(slots[i].password_wiped);
        if (slots[i].error == -ECANCELED) {
            cancelled++;
            cr_expect_not(slots[i].has_hash, "job %d", i);
        } else {
            hashed++;
            cr_expect_eq(slots[i].error, 0, "job %d", i);
            cr_expect(hd_password_verify(slots[i].hash, good_pw, strlen(good_pw)), "job %d", i);
        }
    }
    cr_expect_eq(cancelled + hashed, N_STOP);
    /* 100 jobs of ~10 ms on 2 workers cannot all have run between the last
     * submit and the stop a few microseconds later. */
    cr_expect_gt(cancelled, 0);
}

/* A job that is never submitted is freed with its password wiped. */
Test(auth, job_free_without_submit)
{
    struct hd_auth_job *job = hd_auth_job_new(HD_AUTH_VERIFY);
    hd_auth_job_set_password(job, good_pw, strlen(good_pw));
    hd_auth_job_set_password(job, bad_pw, strlen(bad_pw)); /* replaces, no leak */
    cr_expect_eq(job->password_len, strlen(bad_pw));
    cr_expect_str_eq(job->password, bad_pw);
    job->hash = hd_strdup("$argon2id$whatever");
    hd_auth_job_free(job);
    hd_auth_job_free(NULL);
    cr_expect(true);
}
