/* The auth actor: a bounded pool of auth.hash_workers threads that hash and
 * verify passwords (Argon2id, herald/password.h), so an I/O thread never
 * hashes and memory stays bounded: each hash takes argon2_mem_kib (64 MiB at
 * INTERACTIVE), and at most hash_workers run at once. Jobs are spread
 * round-robin over the workers.
 *
 * A job is a message: the submitter fills it, hd_auth_submit hands it to a
 * worker, the worker runs it and calls job->done on its own thread, which
 * takes the job back (and usually posts a reply, e.g. hd_reply_post).
 *
 * Metrics: herald_auth_jobs_total{kind,outcome},
 * herald_auth_job_duration_seconds{kind} (histogram), herald_auth_workers;
 * queue depths are herald_inbox_depth{inbox="auth-N"}. */
#ifndef HERALD_AUTH_H
#define HERALD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/inbox.h"

struct hd_config;
struct hd_auth;

enum hd_auth_job_kind { HD_AUTH_HASH, HD_AUTH_VERIFY };

/* Threads: filled by the submitter, then owned by one worker from
 * hd_auth_submit until done runs, then by whoever done hands it to. */
struct hd_auth_job {
    struct hd_msg _msg; /* first */
    enum hd_auth_job_kind kind;
    /* Owned. Set with hd_auth_job_set_password. The worker wipes
     * (sodium_memzero) and frees it as soon as it is hashed, before done runs:
     * in done it is NULL. */
    char *password;
    size_t password_len;
    /* VERIFY: the stored hash (owned, NUL-terminated), or NULL for an unknown
     * user: a dummy verify then runs against a hash made at start with the
     * same costs, so an unknown email costs one hash like a wrong password (no
     * timing oracle). HASH: the result (owned), NULL on error. */
    char *hash;
    bool ok;           /* VERIFY: the password matched (always false for a NULL hash) */
    bool needs_rehash; /* VERIFY: matched, and hash is not Argon2id at the current costs */
    char *new_hash; /* VERIFY with needs_rehash: a fresh hash to store (owned), or NULL on error */
    /* 0; -ENOMEM when a hash could not allocate (HASH: no hash; VERIFY: the
     * rehash failed, ok still holds); -ECANCELED when hd_auth_stop ran before
     * a worker reached the job (nothing was computed). */
    int error;
    /* Runs once on the worker thread and takes ownership of @job. Must not
     * block: it posts the outcome onward and returns. */
    void (*done)(struct hd_auth_job *job);
    void *ctx; /* the submitter's; untouched by the pool */
};

/**
 * Starts auth.hash_workers worker threads with the Argon2id costs of @cfg
 * (borrowed; read only here), and makes the dummy hash for unknown users
 * (one hash at those costs). Calls sodium_init(). Registers the metrics.
 * Returns NULL (errno set) on failure. Main thread.
 */
struct hd_auth *hd_auth_start(const struct hd_config *cfg);

/**
 * Stops the pool: a job a worker is running finishes normally; jobs still
 * queued get done with error -ECANCELED and no hash. Every submitted job's
 * done has run when it returns. Call after the I/O threads stopped (nothing
 * submits any more). NULL is fine. Main thread.
 */
void hd_auth_stop(struct hd_auth *a);

/** A zeroed job of @kind (aborts on out-of-memory). Any thread. */
struct hd_auth_job *hd_auth_job_new(enum hd_auth_job_kind kind);

/** Copies @len bytes of @pw (borrowed) into job->password, NUL-terminated,
 * wiping and replacing any previous one. Any thread owning @job. */
void hd_auth_job_set_password(struct hd_auth_job *job, const char *pw, size_t len);

/** Wipes the password and frees it, both hashes and @job. NULL is fine. */
void hd_auth_job_free(struct hd_auth_job *job);

/**
 * Queues @job on a worker; takes ownership until job->done runs (which it
 * always does, exactly once). job->done and job->password must be set; check
 * the password with hd_password_check first. Any thread, never blocks; not
 * after hd_auth_stop started.
 */
void hd_auth_submit(struct hd_auth *a, struct hd_auth_job *job);

/** The number of worker threads. Any thread. */
int hd_auth_workers(const struct hd_auth *a);

#endif
