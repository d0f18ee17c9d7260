/* The Postgres backend (libpq): connecting, running statements with a
 * deadline, mapping failures to store statuses, transactions, migrations.
 * The ops themselves are in postgres_ops.c. A connection belongs to one DB
 * worker thread. */
#include "store/postgres_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* pg_advisory_xact_lock key that serialises schema changes across nodes. */
#define MIGRATION_LOCK_KEY "79462569954372" /* "HERALD" in ASCII, as a bigint */

/* The server itself ends a statement at query_timeout_ms (statement_timeout)
 * and answers. A server that does not answer at all (hung host, half-open
 * TCP) is given up on by the client after 2 x query_timeout_ms plus this; the
 * connection is then dropped. */
#define CLIENT_GRACE_MS 1000

/* ---- parameters ---------------------------------------------------------- */

void hd__pg_str(struct hd_pg_params *p, const char *s)
{
    HD_ASSERT(p->n < HD_PG_MAX_PARAMS);
    p->v[p->n++] = s;
}

void hd__pg_opt(struct hd_pg_params *p, const char *s)
{
    hd__pg_str(p, s && s[0] ? s : NULL);
}

void hd__pg_i64(struct hd_pg_params *p, int64_t x)
{
    HD_ASSERT(p->n < HD_PG_MAX_PARAMS);
    snprintf(p->num[p->n], sizeof(p->num[p->n]), "%" PRId64, x);
    p->v[p->n] = p->num[p->n];
    p->n++;
}

void hd__pg_bool(struct hd_pg_params *p, bool b)
{
    hd__pg_str(p, b ? "t" : "f");
}

/* ---- messages ------------------------------------------------------------ */

/* Writes @prefix + @msg into @out as one line: control characters become
 * spaces, runs of spaces collapse, the end is trimmed. */
static void one_line(char *out, size_t cap, const char *prefix, const char *msg)
{
    if (!cap)
        return;
    snprintf(out, cap, "%s", prefix);
    size_t n = strlen(out);
    bool space = n > 0 && out[n - 1] == ' ';
    for (const char *s = msg ? msg : ""; *s && n + 1 < cap; s++) {
        bool blank = (unsigned char)*s <= ' ';
        if (blank && space)
            continue;
        out[n++] = blank ? ' ' : *s;
        space = blank;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Replaces every occurrence of @secret in @s (in place) with "***". */
static void redact(char *s, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    if (sl == 0)
        return;
    for (char *hit; (hit = strstr(s, secret));) {
        memcpy(hit, "***", sl < 3 ? sl : 3);
        memmove(hit + (sl < 3 ? sl : 3), hit + sl, strlen(hit + sl) + 1);
    }
}

/* The primary message of @r, else the connection's last error. */
static const char *message_of(struct hd_store_conn *c, const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    return m ? m : PQerrorMessage(c->pg);
}

/* ---- waiting with a deadline --------------------------------------------- */

/* The monotonic ms by which the server must have answered, or -1. */
static int64_t deadline_of(const struct hd_store_conn *c)
{
    if (c->timeout_ms <= 0)
        return -1;
    return (int64_t)hd_now_ms() + 2 * (int64_t)c->timeout_ms + CLIENT_GRACE_MS;
}

/* Waits until a result can be read without blocking. False only when
 * @deadline (monotonic ms, -1 = none) passed first; a broken socket returns
 * true so PQgetResult reports it. */
static bool await_input(PGconn *pg, int64_t deadline)
{
    while (PQisBusy(pg)) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - (int64_t)hd_now_ms();
            if (left <= 0)
                return false;
            wait = (int)left;
        }
        struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
        if (pfd.fd < 0)
            return true;
        int n = poll(&pfd, 1, wait);
        if (n < 0 && errno != EINTR)
            return true;
        if (n > 0 && !PQconsumeInput(pg))
            return true;
    }
    return true;
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Reads every result of the command just sent. Returns the first failed
 * one, else the last one; NULL when there was none or the deadline passed
 * (*late: the connection is then out of step and must be dropped). */
static PGresult *collect(struct hd_store_conn *c, int64_t deadline, bool *late)
{
    PGresult *keep = NULL;
    *late = false;
    for (;;) {
        if (!await_input(c->pg, deadline)) {
            *late = true;
            PQclear(keep);
            return NULL;
        }
        PGresult *r = PQgetResult(c->pg);
        if (!r)
            return keep;
        if (keep && !result_ok(keep)) {
            PQclear(r);
        } else {
            PQclear(keep);
            keep = r;
        }
    }
}

/* ---- failure mapping ----------------------------------------------------- */

static bool sqlstate_is(const char *state, const char *code)
{
    return state && strcmp(state, code) == 0;
}

static bool connection_lost(struct hd_store_conn *c, const char *state)
{
    if (PQstatus(c->pg) != CONNECTION_OK)
        return true;
    return (state && strncmp(state, "08", 2) == 0) || sqlstate_is(state, "57P01") ||
           sqlstate_is(state, "57P02") || sqlstate_is(state, "57P03");
}

/* "email" / "username" for the unique indexes on users; NULL for any other
 * unique key (a random id or hash colliding is a bug, not a conflict). */
static const char *conflict_field(const PGresult *r)
{
    const char *name = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    if (name && strcmp(name, "users_email_lower_key") == 0)
        return "email";
    if (name && strcmp(name, "users_username_lower_key") == 0)
        return "username";
    return NULL;
}

static void mark_broken(struct hd_store_conn *c, const char *why)
{
    if (c->broken)
        return;
    c->broken = true;
    c->in_tx = false; /* the server ends it with the connection */
    char line[256];
    one_line(line, sizeof(line), "", why);
    hd_log(HD_LOG_WARN, "store connection lost", "backend", "postgres", "error", line, NULL);
}

/* Maps a failed statement to op->status (and conflict_field). */
static enum hd_store_status classify(struct hd_store_conn *c, const PGresult *r, bool late,
                                     struct hd_store_op *op)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (late) {
        mark_broken(c, "no answer from postgres in time");
        return HD_STORE_TIMEOUT;
    }
    if (connection_lost(c, state)) {
        mark_broken(c, message_of(c, r));
        return HD_STORE_UNAVAILABLE;
    }
    if (sqlstate_is(state, "57014") || sqlstate_is(state, "55P03"))
        return HD_STORE_TIMEOUT; /* statement_timeout / lock_timeout */
    if (sqlstate_is(state, "23505") && (op->conflict_field = conflict_field(r)))
        return HD_STORE_CONFLICT;
    if (sqlstate_is(state, "23503"))
        return HD_STORE_NOT_FOUND; /* a referenced row (org, user, session) is gone */
    return HD_STORE_ERROR;
}

/* Records the failure of statement @what (consumes @r), ends an open
 * transaction, returns NULL. */
static PGresult *fail(struct hd_store_conn *c, struct hd_store_op *op, const char *what,
                      PGresult *r, bool late)
{
    op->status = classify(c, r, late, op);
    const char *name = hd_store_op_name(op->kind);
    if (op->status == HD_STORE_ERROR) {
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        char line[512];
        one_line(line, sizeof(line), "", message_of(c, r));
        hd_log(HD_LOG_ERROR, "store query failed", "op", name, "backend", "postgres", "statement",
               what, "sqlstate", state ? state : "", "error", line, NULL);
    } else if (op->status == HD_STORE_TIMEOUT) {
        hd_log(HD_LOG_WARN, "store query timed out", "op", name, "backend", "postgres", "statement",
               what, NULL);
    }
    PQclear(r);
    hd__pg_rollback(c);
    return NULL;
}

/* ---- running statements -------------------------------------------------- */

/* Sends a constant command (BEGIN, COMMIT...) and waits for its outcome. */
static bool simple(struct hd_store_conn *c, struct hd_store_op *op, const char *sql)
{
    if (c->broken) {
        op->status = HD_STORE_UNAVAILABLE;
        return false;
    }
    int64_t deadline = deadline_of(c);
    bool late = false;
    PGresult *r = PQsendQuery(c->pg, sql) ? collect(c, deadline, &late) : NULL;
    if (!result_ok(r)) {
        fail(c, op, sql, r, late);
        return false;
    }
    PQclear(r);
    return true;
}

static bool prepare(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st)
{
    HD_ASSERT(st->slot >= 0 && st->slot < 64);
    uint64_t bit = UINT64_C(1) << st->slot;
    if (c->prepared & bit)
        return true;
    int64_t deadline = deadline_of(c);
    bool late = false;
    PGresult *r =
        PQsendPrepare(c->pg, st->name, st->sql, 0, NULL) ? collect(c, deadline, &late) : NULL;
    if (!result_ok(r)) {
        fail(c, op, st->name, r, late);
        return false;
    }
    PQclear(r);
    c->prepared |= bit;
    return true;
}

PGresult *hd__pg_run(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                     const struct hd_pg_params *p)
{
    if (c->broken) {
        op->status = HD_STORE_UNAVAILABLE;
        return NULL;
    }
    if (!prepare(c, op, st))
        return NULL;
    int64_t deadline = deadline_of(c);
    bool late = false;
    PGresult *r = PQsendQueryPrepared(c->pg, st->name, p->n, p->v, NULL, NULL, 0)
                      ? collect(c, deadline, &late)
                      : NULL;
    if (!result_ok(r))
        return fail(c, op, st->name, r, late);
    return r;
}

bool hd__pg_cmd(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                const struct hd_pg_params *p, int64_t *affected)
{
    PGresult *r = hd__pg_run(c, op, st, p);
    if (!r)
        return false;
    if (affected)
        *affected = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return true;
}

bool hd__pg_begin(struct hd_store_conn *c, struct hd_store_op *op)
{
    HD_ASSERT(!c->in_tx);
    if (!simple(c, op, "BEGIN"))
        return false;
    c->in_tx = true;
    return true;
}

bool hd__pg_commit(struct hd_store_conn *c, struct hd_store_op *op)
{
    HD_ASSERT(c->in_tx);
    c->in_tx = false; /* a failed COMMIT ends the transaction too */
    return simple(c, op, "COMMIT");
}

void hd__pg_rollback(struct hd_store_conn *c)
{
    if (!c->in_tx)
        return;
    c->in_tx = false;
    if (c->broken)
        return;
    int64_t deadline = deadline_of(c);
    bool late = false;
    PGresult *r = PQsendQuery(c->pg, "ROLLBACK") ? collect(c, deadline, &late) : NULL;
    if (!result_ok(r))
        mark_broken(c, late ? "no answer to ROLLBACK in time" : message_of(c, r));
    PQclear(r);
}

/* ---- connection ---------------------------------------------------------- */

/* The password in @target, for scrubbing libpq's messages (caller frees). */
static char *password_of(const char *target)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(target, &perr);
    PQfreemem(perr);
    char *pw = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            pw = hd_strdup(o->val);
    }
    PQconninfoFree(opts);
    return pw;
}

/* Bounds every statement and lock wait of the session by the timeout. */
static int set_timeouts(struct hd_store_conn *c, char *err, size_t cap)
{
    char ms[24];
    snprintf(ms, sizeof(ms), "%d", c->timeout_ms);
    const char *v[] = {ms};
    static const char sql[] = "SELECT set_config('statement_timeout', $1, false), "
                              "set_config('lock_timeout', $1, false)";
    bool late = false;
    PGresult *r = PQsendQueryParams(c->pg, sql, 1, NULL, v, NULL, NULL, 0)
                      ? collect(c, deadline_of(c), &late)
                      : NULL;
    bool ok = result_ok(r);
    if (!ok)
        one_line(err, cap,
                 "postgres: cannot set timeouts: ", late ? "no answer in time" : message_of(c, r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Tries to connect; NULL with @err filled (password scrubbed). */
static PGconn *connect_pg(const char *target, char *err, size_t cap)
{
    /* Keywords before dbname are defaults the URL may override; the ones
     * after it win over the URL. keepalives notice a dead server while idle;
     * tcp_user_timeout one that stops acknowledging what we send. */
    static const char *const keys[] = {"connect_timeout",           "keepalives",
                                       "keepalives_idle",           "keepalives_interval",
                                       "keepalives_count",          "tcp_user_timeout",
                                       "fallback_application_name", "dbname",
                                       "client_encoding",           NULL};
    const char *vals[] = {"5", "1", "10", "5", "3", "30000", "herald", target, "UTF8", NULL};
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(target, &perr);
    PQfreemem(perr); /* may quote the URL, password included: not repeated */
    if (!parsed) {
        snprintf(err, cap, "postgres: store.database_url is not a valid connection URL");
        return NULL;
    }
    PQconninfoFree(parsed);
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg && PQstatus(pg) == CONNECTION_OK)
        return pg;
    one_line(err, cap, "postgres: ", pg ? PQerrorMessage(pg) : "out of memory");
    char *pw = password_of(target);
    redact(err, pw);
    free(pw);
    PQfinish(pg);
    return NULL;
}

/* Server notices go to the log, not to stderr as libpq's default does. */
static void on_notice(void *arg, const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    bool warning = sev && strcmp(sev, "WARNING") == 0;
    char line[256];
    one_line(line, sizeof(line), "", msg);
    hd_log(warning ? HD_LOG_WARN : HD_LOG_DEBUG, "postgres notice", "message", line, NULL);
}

static bool pg_usable(struct hd_store_conn *c)
{
    return c && !c->broken && PQstatus(c->pg) == CONNECTION_OK;
}

static void pg_close(struct hd_store_conn *c)
{
    if (!c)
        return;
    PQfinish(c->pg); /* sends Terminate; an open transaction is rolled back */
    free(c);
}

static struct hd_store_conn *pg_open(const char *target, int query_timeout_ms, char *err,
                                     size_t cap)
{
    PGconn *pg = connect_pg(target, err, cap);
    if (!pg)
        return NULL;
    PQsetNoticeReceiver(pg, on_notice, NULL);
    struct hd_store_conn *c = hd_calloc(1, sizeof(*c));
    c->pg = pg;
    c->timeout_ms = query_timeout_ms > 0 ? query_timeout_ms : 0;
    if (set_timeouts(c, err, cap) != 0) {
        pg_close(c);
        return NULL;
    }
    return c;
}

static void pg_exec(struct hd_store_conn *c, struct hd_store_op *op)
{
    op->status = HD_STORE_OK;
    op->conflict_field = NULL;
    if (!pg_usable(c)) {
        op->status = HD_STORE_UNAVAILABLE;
        return;
    }
    hd__pg_exec_op(c, op);
    HD_ASSERT(!c->in_tx); /* every op ends its own transaction */
}

/* ---- migrations ---------------------------------------------------------- */

/* Runs @sql (with @p, or several statements when @p is NULL) without a
 * deadline: a migration or a wait for another node's may take long. Returns
 * the result, or NULL with a reason in @err (the connection marked broken
 * when it was lost). */
static PGresult *mig_run(struct hd_store_conn *c, const char *sql, const struct hd_pg_params *p,
                         const char *what, char *err, size_t cap)
{
    int sent = p ? PQsendQueryParams(c->pg, sql, p->n, NULL, p->v, NULL, NULL, 0)
                 : PQsendQuery(c->pg, sql);
    bool late = false;
    PGresult *r = sent ? collect(c, -1, &late) : NULL;
    if (result_ok(r))
        return r;
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "postgres: %s: ", what);
    one_line(err, cap, prefix, message_of(c, r));
    if (connection_lost(c, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL))
        mark_broken(c, message_of(c, r));
    PQclear(r);
    return NULL;
}

static bool mig_cmd(struct hd_store_conn *c, const char *sql, const struct hd_pg_params *p,
                    const char *what, char *err, size_t cap)
{
    PGresult *r = mig_run(c, sql, p, what, err, cap);
    PQclear(r);
    return r != NULL;
}

/* BEGIN with no statement or lock timeout, holding the migration lock: a
 * node waits here while another one migrates. */
static bool mig_begin(struct hd_store_conn *c, char *err, size_t cap)
{
    if (!pg_usable(c)) {
        snprintf(err, cap, "postgres: not connected");
        return false;
    }
    struct hd_pg_params p = {0};
    hd__pg_str(&p, MIGRATION_LOCK_KEY);
    c->in_tx = true;
    if (mig_cmd(c, "BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0", NULL,
                "begin", err, cap) &&
        mig_cmd(c, "SELECT pg_advisory_xact_lock($1::bigint)", &p, "migration lock", err, cap))
        return true;
    hd__pg_rollback(c);
    return false;
}

static bool mig_commit(struct hd_store_conn *c, char *err, size_t cap)
{
    c->in_tx = false;
    return mig_cmd(c, "COMMIT", NULL, "commit", err, cap);
}

static int pg_applied_migrations(struct hd_store_conn *c, int **versions, size_t *n, char *err,
                                 size_t cap)
{
    *versions = NULL;
    *n = 0;
    static const char create[] =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
    /* Under the lock: two nodes creating the table at once could collide. */
    if (!mig_begin(c, err, cap))
        return -1;
    if (!mig_cmd(c, create, NULL, "schema_migrations", err, cap) || !mig_commit(c, err, cap)) {
        hd__pg_rollback(c);
        return -1;
    }
    PGresult *r = mig_run(c, "SELECT version FROM schema_migrations ORDER BY version", NULL,
                          "schema_migrations", err, cap);
    if (!r)
        return -1;
    int rows = PQntuples(r);
    *versions = hd_calloc((size_t)rows, sizeof(**versions));
    for (int i = 0; i < rows; i++)
        (*versions)[i] = atoi(PQgetvalue(r, i, 0));
    *n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* True when @version is in schema_migrations; *failed on error. */
static bool mig_recorded(struct hd_store_conn *c, int version, bool *failed, char *err, size_t cap)
{
    struct hd_pg_params p = {0};
    hd__pg_i64(&p, version);
    PGresult *r = mig_run(c, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", &p,
                          "schema_migrations", err, cap);
    *failed = !r;
    bool found = r && PQntuples(r) > 0;
    PQclear(r);
    return found;
}

static int pg_apply_migration(struct hd_store_conn *c, int version, const char *name,
                              const char *sql, char *err, size_t cap)
{
    if (!mig_begin(c, err, cap))
        return -1;
    bool failed = false;
    if (mig_recorded(c, version, &failed, err, cap)) /* applied by another node */
        return mig_commit(c, err, cap) ? 0 : -1;
    struct hd_pg_params p = {0};
    hd__pg_i64(&p, version);
    hd__pg_str(&p, name);
    hd__pg_i64(&p, hd_wall_ms());
    static const char record[] =
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";
    if (!failed && mig_cmd(c, sql, NULL, name, err, cap) &&
        mig_cmd(c, record, &p, "schema_migrations", err, cap) && mig_commit(c, err, cap))
        return 0;
    hd__pg_rollback(c);
    return -1;
}

/* The Postgres backend (backend.h): @target is a libpq URL. */
const struct hd_store_backend hd__store_postgres = {
    .name = "postgres",
    .dialect = "pg",
    .open = pg_open,
    .close = pg_close,
    .usable = pg_usable,
    .exec = pg_exec,
    .applied_migrations = pg_applied_migrations,
    .apply_migration = pg_apply_migration,
};
