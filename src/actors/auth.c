/* The auth actor: auth.hash_workers actors, each hashing one password at a
 * time. Their only shared state is read-only after start (costs, the dummy
 * hash) plus relaxed atomic counters for /metrics and two atomics for
 * dispatch and stop. */
#include "herald/auth.h"

#include "herald/actor.h"
#include "herald/buf.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/log.h"
#include "herald/metrics.h"
#include "herald/password.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>

#define AUTH_JOB_MSG 1

enum outcome { OUT_OK, OUT_REHASHED, OUT_MISMATCH, OUT_UNKNOWN_USER, OUT_ERROR, OUT_CANCELLED };
#define N_OUTCOMES 6
#define N_KINDS    2
#define N_BUCKETS  12 /* the bounds below, then +Inf */

static const char *const outcome_names[N_OUTCOMES] = {"ok",           "rehashed", "mismatch",
                                                      "unknown_user", "error",    "cancelled"};
static const char *const kind_names[N_KINDS] = {"hash", "verify"};
static const uint64_t bounds_us[N_BUCKETS - 1] = {1000,   5000,   10000,  25000,   50000,  100000,
                                                  200000, 400000, 800000, 1600000, 5000000};

/* Written by the workers, read by the scraping I/O thread: relaxed atomics. */
struct auth_metrics {
    uint64_t jobs[N_KINDS][N_OUTCOMES];
    uint64_t buckets[N_KINDS][N_BUCKETS];
    uint64_t sum_us[N_KINDS];
    int busy;
};

struct auth_worker {
    struct hd_auth *auth; /* borrowed */
    struct hd_actor *actor;
};

struct hd_auth {
    /* Set on the main thread before the workers start; read-only after. */
    struct hd_password_params params;
    char dummy_hash[crypto_pwhash_STRBYTES];
    int n_workers;
    struct auth_worker *workers;
    /* Any thread, atomically. */
    unsigned next;           /* round-robin cursor */
    bool stopping;           /* set by hd_auth_stop: queued jobs are cancelled */
    bool metrics_registered; /* main thread only */
    struct auth_metrics m;
};

/* ---- jobs ----------------------------------------------------------------- */

struct hd_auth_job *hd_auth_job_new(enum hd_auth_job_kind kind)
{
    struct hd_auth_job *job = hd_calloc(1, sizeof(*job));
    job->_msg.type = AUTH_JOB_MSG;
    job->kind = kind;
    return job;
}

static void wipe_password(struct hd_auth_job *job)
{
    if (job->password) {
        sodium_memzero(job->password, job->password_len);
        free(job->password);
    }
    job->password = NULL;
    job->password_len = 0;
}

void hd_auth_job_set_password(struct hd_auth_job *job, const char *pw, size_t len)
{
    wipe_password(job);
    job->password = hd_malloc(len + 1);
    memcpy(job->password, pw, len);
    job->password[len] = '\0';
    job->password_len = len;
}

void hd_auth_job_free(struct hd_auth_job *job)
{
    if (!job)
        return;
    wipe_password(job);
    free(job->hash);
    free(job->new_hash);
    free(job);
}

/* ---- metrics --------------------------------------------------------------- */

static void record(struct auth_metrics *m, enum hd_auth_job_kind kind, enum outcome o,
                   uint64_t elapsed_us)
{
    __atomic_add_fetch(&m->jobs[kind][o], 1, __ATOMIC_RELAXED);
    if (o == OUT_CANCELLED)
        return; /* nothing ran: no duration */
    int b = 0;
    while (b < N_BUCKETS - 1 && elapsed_us > bounds_us[b])
        b++;
    __atomic_add_fetch(&m->buckets[kind][b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->sum_us[kind], elapsed_us, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void collect_histogram(const struct auth_metrics *m, struct hd_buf *out, int k)
{
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += load(&m->buckets[k][b]);
        char le[24];
        if (b == N_BUCKETS - 1)
            snprintf(le, sizeof(le), "+Inf");
        else
            snprintf(le, sizeof(le), "%g", (double)bounds_us[b] / 1e6);
        hd_buf_appendf(out, "herald_auth_job_duration_seconds_bucket{kind=\"%s\",le=\"%s\"} %llu\n",
                       kind_names[k], le, (unsigned long long)cum);
    }
    hd_buf_appendf(out,
                   "herald_auth_job_duration_seconds_sum{kind=\"%s\"} %.6f\n"
                   "herald_auth_job_duration_seconds_count{kind=\"%s\"} %llu\n",
                   kind_names[k], (double)load(&m->sum_us[k]) / 1e6, kind_names[k],
                   (unsigned long long)cum);
}

/* On the scraping I/O thread. */
static void collect(void *ctx, struct hd_buf *out)
{
    const struct hd_auth *a = ctx;
    const struct auth_metrics *m = &a->m;
    hd_buf_puts(out, "# HELP herald_auth_jobs_total Password hash/verify jobs by outcome.\n"
                     "# TYPE herald_auth_jobs_total counter\n");
    for (int k = 0; k < N_KINDS; k++) {
        for (int o = 0; o < N_OUTCOMES; o++) {
            uint64_t n = load(&m->jobs[k][o]);
            if (n)
                hd_buf_appendf(out, "herald_auth_jobs_total{kind=\"%s\",outcome=\"%s\"} %llu\n",
                               kind_names[k], outcome_names[o], (unsigned long long)n);
        }
    }
    hd_buf_puts(out, "# HELP herald_auth_job_duration_seconds Time a worker spent on a job "
                     "(a rehash counts twice).\n"
                     "# TYPE herald_auth_job_duration_seconds histogram\n");
    for (int k = 0; k < N_KINDS; k++)
        collect_histogram(m, out, k);
    hd_buf_appendf(out,
                   "# HELP herald_auth_workers Password hashing threads (auth.hash_workers).\n"
                   "# TYPE herald_auth_workers gauge\nherald_auth_workers %d\n"
                   "# HELP herald_auth_workers_busy Hashing threads running a job now.\n"
                   "# TYPE herald_auth_workers_busy gauge\nherald_auth_workers_busy %d\n",
                   a->n_workers, __atomic_load_n(&m->busy, __ATOMIC_RELAXED));
}

/* ---- the worker ------------------------------------------------------------ */

static enum outcome run_hash(const struct hd_auth *a, struct hd_auth_job *job)
{
    job->hash = hd_malloc(crypto_pwhash_STRBYTES);
    job->error = hd_password_hash(job->password, job->password_len, &a->params, job->hash);
    if (job->error) {
        free(job->hash);
        job->hash = NULL;
        return OUT_ERROR;
    }
    return OUT_OK;
}

static enum outcome run_verify(const struct hd_auth *a, struct hd_auth_job *job)
{
    if (!job->hash) {
        /* Same work as a wrong password: an unknown email is not observable. */
        (void)hd_password_verify(a->dummy_hash, job->password, job->password_len);
        job->ok = false;
        return OUT_UNKNOWN_USER;
    }
    job->ok = hd_password_verify(job->hash, job->password, job->password_len);
    if (!job->ok)
        return OUT_MISMATCH;
    if (!hd_password_needs_rehash(job->hash, &a->params))
        return OUT_OK;
    job->needs_rehash = true;
    char *fresh = hd_malloc(crypto_pwhash_STRBYTES);
    job->error = hd_password_hash(job->password, job->password_len, &a->params, fresh);
    if (job->error) {
        free(fresh);
        return OUT_ERROR;
    }
    job->new_hash = fresh;
    return OUT_REHASHED;
}

/* Worker thread: runs the job (or cancels it during stop) and hands it to done. */
static void on_job(void *ctx, struct hd_msg *msg)
{
    struct auth_worker *w = ctx;
    struct hd_auth *a = w->auth;
    struct hd_auth_job *job = HD_CONTAINER_OF(msg, struct hd_auth_job, _msg);
    HD_ASSERT(msg->type == AUTH_JOB_MSG);
    enum outcome o;
    uint64_t start = hd_now_us();
    __atomic_add_fetch(&a->m.busy, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&a->stopping, __ATOMIC_ACQUIRE)) {
        job->error = -ECANCELED;
        o = OUT_CANCELLED;
    } else if (job->kind == HD_AUTH_HASH) {
        o = run_hash(a, job);
    } else {
        o = run_verify(a, job);
    }
    wipe_password(job); /* as early as possible: done does not need it */
    __atomic_sub_fetch(&a->m.busy, 1, __ATOMIC_RELAXED);
    record(&a->m, job->kind, o, hd_now_us() - start);
    job->done(job);
}

/* ---- public ----------------------------------------------------------------- */

/* The hash an unknown user's password is verified against: of 32 random
 * bytes nobody knows, at the pool's costs, so that verify costs the same. */
static int make_dummy_hash(struct hd_auth *a)
{
    unsigned char secret[32];
    int rc = hd_random_bytes(secret, sizeof(secret));
    if (rc == 0)
        rc = hd_password_hash((const char *)secret, sizeof(secret), &a->params, a->dummy_hash);
    sodium_memzero(secret, sizeof(secret));
    return rc;
}

/* Hashing takes whatever CPU is idle, but never ahead of the I/O threads:
 * a login flood must not slow unrelated requests beyond what the CPU
 * forces. Linux applies nice values per thread. */
static void lower_priority(struct hd_actor *actor)
{
    (void)actor;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        hd_log(HD_LOG_WARN, "cannot lower the priority of a hashing thread", NULL);
}

struct hd_auth *hd_auth_start(const struct hd_config *cfg)
{
    HD_ASSERT(cfg->auth.hash_workers >= 1);
    if (sodium_init() < 0) {
        errno = EIO;
        return NULL;
    }
    struct hd_auth *a = hd_calloc(1, sizeof(*a));
    hd_password_params_from_config(cfg, &a->params);
    int rc = make_dummy_hash(a);
    if (rc < 0) {
        errno = -rc;
        goto err;
    }
    a->workers = hd_calloc((size_t)cfg->auth.hash_workers, sizeof(*a->workers));
    for (int i = 0; i < cfg->auth.hash_workers; i++) {
        char name[32];
        snprintf(name, sizeof(name), "auth-%d", i);
        a->workers[i].auth = a;
        struct hd_actor_spec spec = {
            .name = name, .on_message = on_job, .on_start = lower_priority, .ctx = &a->workers[i]};
        a->workers[i].actor = hd_actor_start(&spec);
        if (!a->workers[i].actor)
            goto err;
        a->n_workers++;
    }
    hd_metrics_register(collect, a);
    a->metrics_registered = true;
    return a;
err:;
    int saved = errno;
    hd_auth_stop(a);
    errno = saved;
    return NULL;
}

void hd_auth_stop(struct hd_auth *a)
{
    if (!a)
        return;
    __atomic_store_n(&a->stopping, true, __ATOMIC_RELEASE);
    /* Each stop delivers the jobs still queued (cancelled at once) after the
     * one running, then joins: every done has run when this returns. */
    for (int i = 0; i < a->n_workers; i++)
        hd_actor_stop(a->workers[i].actor);
    if (a->metrics_registered)
        hd_metrics_unregister(collect, a);
    free(a->workers);
    sodium_memzero(a, sizeof(*a));
    free(a);
}

void hd_auth_submit(struct hd_auth *a, struct hd_auth_job *job)
{
    HD_ASSERT(job->done && job->password);
    HD_ASSERT(!job->new_hash && (job->kind == HD_AUTH_VERIFY || !job->hash));
    job->_msg.type = AUTH_JOB_MSG;
    unsigned i = __atomic_fetch_add(&a->next, 1, __ATOMIC_RELAXED) % (unsigned)a->n_workers;
    hd_actor_post(a->workers[i].actor, &job->_msg);
}

int hd_auth_workers(const struct hd_auth *a)
{
    return a->n_workers;
}
