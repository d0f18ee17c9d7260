/* Store test fixture: see store_fixture.h. */
#include "store_fixture.h"

#include "store/backend.h"
#include "store/migrate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "harness.h"
#include "herald/core.h"

#define PASSWORD_HASH "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"

static struct hd_store_fixture g_fixture;

/* ---- values ---------------------------------------------------------------- */

int64_t hd_test_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool hd_test_is_uuid_v4(const char *s)
{
    if (!s || strlen(s) != HD_ID_LEN)
        return false;
    for (int i = 0; i < HD_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash != (s[i] == '-'))
            return false;
        if (!dash && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char raw[64];
    cr_assert(bytes <= sizeof raw && hd_random_bytes(raw, bytes) == 0, "random bytes");
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

void hd_test_random_hash(char out[65])
{
    random_hex(out, 32);
}

void hd_test_unique_email(char *out, size_t cap, const char *prefix)
{
    char hex[17];
    random_hex(hex, 8);
    snprintf(out, cap, "%s-%s@example.com", prefix, hex);
}

/* ---- raw connections ----------------------------------------------------- */

/* A libpq connection to @url with a connect timeout; NULL with @err set. */
static PGconn *pg_connect(const char *url, char *err, size_t cap)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {url, "10", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg && PQstatus(pg) == CONNECTION_OK)
        return pg;
    snprintf(err, cap, "%s", pg ? PQerrorMessage(pg) : "out of memory");
    PQfinish(pg);
    return NULL;
}

/* Runs a command on the admin connection; returns false with @err set. */
static bool pg_command(PGconn *pg, const char *sql, char *err, size_t cap)
{
    PGresult *r = PQexec(pg, sql);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, cap, "%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return ok;
}

static const char *database_url(void)
{
    const char *url = getenv("HERALD_TEST_DATABASE_URL");
    cr_assert(url && *url,
              "HERALD_TEST_DATABASE_URL is not set: the Postgres store tests need the test "
              "Postgres. Run them through scripts/test (or `scripts/services start` and source "
              "the file `scripts/services env` prints); a Postgres test that did not run must "
              "not pass");
    return url;
}

static void create_schema(struct hd_store_fixture *f)
{
    const char *url = database_url();
    char hex[17], err[1024], sql[128];
    random_hex(hex, 8);
    snprintf(f->schema, sizeof f->schema, "t_%s", hex);
    PGconn *pg = pg_connect(url, err, sizeof err);
    cr_assert(pg, "connecting to HERALD_TEST_DATABASE_URL: %s", err);
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", f->schema);
    bool ok = pg_command(pg, sql, err, sizeof err);
    PQfinish(pg);
    cr_assert(ok, "%s", err);
    int n = snprintf(f->target, sizeof f->target, "%s%coptions=-csearch_path%%3D%s", url,
                     strchr(url, '?') ? '&' : '?', f->schema);
    cr_assert(n > 0 && (size_t)n < sizeof f->target, "database URL too long");
}

/* Drops the schema; a failure only warns (the test's verdict stands). */
static void drop_schema(struct hd_store_fixture *f)
{
    const char *url = getenv("HERALD_TEST_DATABASE_URL");
    char err[1024], sql[160];
    PGconn *pg = url ? pg_connect(url, err, sizeof err) : NULL;
    if (!pg) {
        fprintf(stderr, "store fixture: cannot drop schema %s: %s\n", f->schema,
                url ? err : "no URL");
        return;
    }
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema);
    if (!pg_command(pg, "SET client_min_messages = warning", err, sizeof err) ||
        !pg_command(pg, "SET lock_timeout = '10s'", err, sizeof err) ||
        !pg_command(pg, sql, err, sizeof err))
        fprintf(stderr, "store fixture: %s\n", err);
    PQfinish(pg);
}

/* ---- the fixture ------------------------------------------------------------ */

struct hd_store_conn *hd_test_store_try_connect(const struct hd_store_fixture *f, char *err,
                                                size_t cap)
{
    err[0] = '\0';
    struct hd_store_conn *c = f->b->open(f->target, HD_TEST_QUERY_TIMEOUT_MS, err, cap);
    if (!c && !err[0])
        snprintf(err, cap, "open failed without a reason");
    return c;
}

static struct hd_store_fixture *open_fixture(enum hd_test_backend kind, bool migrate)
{
    struct hd_store_fixture *f = &g_fixture;
    cr_assert_not(f->_open, "one store fixture per test");
    memset(f, 0, sizeof *f);
    f->kind = kind;
    if (kind == HD_TEST_SQLITE) {
        f->name = "sqlite";
        f->b = &hd__store_sqlite;
        hd_test_make_dir(f->dir, sizeof f->dir);
        snprintf(f->target, sizeof f->target, "%s/herald.db", f->dir);
    } else {
        f->name = "postgres";
        f->b = &hd__store_postgres;
        create_schema(f);
    }
    f->_open = true;
    char err[512];
    f->conn = hd_test_store_try_connect(f, err, sizeof err);
    cr_assert(f->conn, "%s: open: %s", f->name, err);
    if (migrate)
        hd_test_store_migrate(f, f->conn);
    return f;
}

struct hd_store_fixture *hd_test_store_open(enum hd_test_backend kind)
{
    return open_fixture(kind, true);
}

struct hd_store_fixture *hd_test_store_open_empty(enum hd_test_backend kind)
{
    return open_fixture(kind, false);
}

void hd_test_store_fini(void)
{
    struct hd_store_fixture *f = &g_fixture;
    if (!f->_open)
        return;
    f->_open = false;
    for (size_t i = 0; i < HD_TEST_MAX_CONNS; i++) {
        if (f->_extra[i])
            f->b->close(f->_extra[i]);
        f->_extra[i] = NULL;
    }
    if (f->conn)
        f->b->close(f->conn);
    f->conn = NULL;
    if (f->kind == HD_TEST_SQLITE)
        hd_test_remove_dir(f->dir);
    else
        drop_schema(f);
}

struct hd_store_conn *hd_test_store_connect(struct hd_store_fixture *f)
{
    char err[512];
    struct hd_store_conn *c = hd_test_store_try_connect(f, err, sizeof err);
    cr_assert(c, "%s: open: %s", f->name, err);
    for (size_t i = 0; i < HD_TEST_MAX_CONNS; i++) {
        if (!f->_extra[i]) {
            f->_extra[i] = c;
            return c;
        }
    }
    f->b->close(c);
    cr_assert_fail("more than %d extra connections", HD_TEST_MAX_CONNS);
    return NULL;
}

void hd_test_store_disconnect(struct hd_store_fixture *f, struct hd_store_conn *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < HD_TEST_MAX_CONNS; i++) {
        if (f->_extra[i] == c)
            f->_extra[i] = NULL;
    }
    if (f->conn == c)
        f->conn = NULL;
    f->b->close(c);
}

int hd_test_store_migrate(struct hd_store_fixture *f, struct hd_store_conn *c)
{
    char err[512] = "";
    int n = hd__migrate(f->b, c, err, sizeof err);
    cr_assert_geq(n, 0, "%s: migrate: %s", f->name, err);
    return n;
}

/* ---- ops ------------------------------------------------------------------- */

enum hd_store_status hd_test_store_exec_on(const struct hd_store_fixture *f,
                                           struct hd_store_conn *c, struct hd_store_op *op)
{
    op->status = HD_STORE_ERROR;
    op->conflict_field = NULL;
    f->b->exec(c, op);
    return op->status;
}

enum hd_store_status hd_test_store_exec(struct hd_store_fixture *f, struct hd_store_op *op)
{
    cr_assert_not_null(f->conn, "the fixture has no connection");
    return hd_test_store_exec_on(f, f->conn, op);
}

struct hd_store_op *hd_test_store__expect(struct hd_store_fixture *f, struct hd_store_op *op,
                                          enum hd_store_status want, const char *file, int line)
{
    enum hd_store_status got = hd_test_store_exec(f, op);
    cr_assert_eq(got, want, "%s:%d [%s] %s: expected %s, got %s (conflict_field %s)", file, line,
                 f->name, hd_store_op_name(op->kind), hd_store_status_name(want),
                 hd_store_status_name(got), op->conflict_field ? op->conflict_field : "NULL");
    return op;
}

/* ---- raw SQL ------------------------------------------------------------------ */

typedef void (*row_fn)(void *ctx, const char *value);

/* Runs @sql on a fresh raw connection and calls @fn with column 0 of each
 * row; returns false with @err set. */
static bool sqlite_rows(const char *path, const char *sql, row_fn fn, void *ctx, char *err,
                        size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(err, cap, "open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, cap, "%s: %s", sql, sqlite3_errmsg(db));
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(st, 0));
    if (rc != SQLITE_DONE) {
        snprintf(err, cap, "%s: %s", sql, sqlite3_errmsg(db));
        goto out;
    }
    ok = true;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

static bool pg_rows(const char *url, const char *sql, row_fn fn, void *ctx, char *err, size_t cap)
{
    PGconn *pg = pg_connect(url, err, cap);
    if (!pg)
        return false;
    PGresult *r = PQexec(pg, sql);
    bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok) {
        for (int i = 0; i < PQntuples(r); i++)
            fn(ctx, PQgetisnull(r, i, 0) ? NULL : PQgetvalue(r, i, 0));
    } else {
        snprintf(err, cap, "%s: %s", sql, PQerrorMessage(pg));
    }
    PQclear(r);
    PQfinish(pg);
    return ok;
}

static void sql_rows(struct hd_store_fixture *f, const char *sql, row_fn fn, void *ctx)
{
    char err[2048] = "";
    bool ok = f->kind == HD_TEST_SQLITE ? sqlite_rows(f->target, sql, fn, ctx, err, sizeof err)
                                        : pg_rows(f->target, sql, fn, ctx, err, sizeof err);
    cr_assert(ok, "[%s] raw SQL: %s", f->name, err);
}

struct int_rows {
    int64_t *v;
    size_t n, cap;
    bool null_seen;
};

static void collect_int(void *ctx, const char *value)
{
    struct int_rows *r = ctx;
    if (!value) {
        r->null_seen = true;
        return;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->v = hd_realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = strtoll(value, NULL, 10);
}

int64_t hd_test_store_sql_int(struct hd_store_fixture *f, const char *sql)
{
    struct int_rows r = {0};
    sql_rows(f, sql, collect_int, &r);
    int64_t v = r.n == 1 ? r.v[0] : 0;
    size_t n = r.n;
    bool null_seen = r.null_seen;
    free(r.v);
    cr_assert(n == 1 && !null_seen, "[%s] %s: expected one integer, got %zu rows%s", f->name, sql,
              n, null_seen ? " (NULL)" : "");
    return v;
}

size_t hd_test_store_sql_ints(struct hd_store_fixture *f, const char *sql, int64_t **out)
{
    struct int_rows r = {0};
    sql_rows(f, sql, collect_int, &r);
    cr_assert_not(r.null_seen, "[%s] %s: a NULL row", f->name, sql);
    *out = r.v;
    return r.n;
}

struct text_rows {
    char *s;
    size_t len;
};

static void collect_text(void *ctx, const char *value)
{
    struct text_rows *t = ctx;
    const char *v = value ? value : "(null)";
    size_t n = strlen(v);
    t->s = hd_realloc(t->s, t->len + n + 2);
    memcpy(t->s + t->len, v, n);
    t->len += n;
    t->s[t->len++] = '\n';
    t->s[t->len] = '\0';
}

char *hd_test_store_sql_text(struct hd_store_fixture *f, const char *sql)
{
    struct text_rows t = {hd_strdup(""), 0};
    sql_rows(f, sql, collect_text, &t);
    return t.s;
}

/* ---- op builders -------------------------------------------------------------- */

struct hd_store_op *hd_test_op_register(const char *org_name, const char *email,
                                        const char *username)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_CREATE_ORG_AND_USER);
    op->org_name = hd_strdup(org_name);
    op->user.email = hd_strdup(email);
    op->user.username = username ? hd_strdup(username) : NULL;
    op->user.display_name = hd_strdup("Test User");
    op->user.password_hash = hd_strdup(PASSWORD_HASH);
    op->user.role = HD_ROLE_MEMBER; /* the store makes the first user admin, not the caller */
    op->now = hd_test_unix_ms();
    return op;
}

struct hd_store_op *hd_test_op_create_user(const char *org_id, const char *email,
                                           const char *username, enum hd_role role)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_CREATE_USER);
    snprintf(op->user.org_id, sizeof op->user.org_id, "%s", org_id);
    snprintf(op->org_id, sizeof op->org_id, "%s", org_id);
    op->user.email = hd_strdup(email);
    op->user.username = username ? hd_strdup(username) : NULL;
    op->user.display_name = hd_strdup("Member");
    op->user.password_hash = hd_strdup(PASSWORD_HASH);
    op->user.role = role;
    op->now = hd_test_unix_ms();
    return op;
}

struct hd_store_op *hd_test_op_id(enum hd_store_op_kind kind, const char *id, int64_t now)
{
    struct hd_store_op *op = hd_store_op_new(kind);
    snprintf(op->id, sizeof op->id, "%s", id);
    op->now = now;
    return op;
}

struct hd_store_op *hd_test_op_session(const char *user_id, const char *org_id, int64_t expires_at,
                                       const char *token_hash)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSION_CREATE);
    int64_t now = hd_test_unix_ms();
    snprintf(op->session.user_id, sizeof op->session.user_id, "%s", user_id);
    snprintf(op->session.org_id, sizeof op->session.org_id, "%s", org_id);
    snprintf(op->user_id, sizeof op->user_id, "%s", user_id);
    snprintf(op->org_id, sizeof op->org_id, "%s", org_id);
    op->session.user_agent = hd_strdup("test-agent/1.0");
    op->session.ip = hd_strdup("127.0.0.1");
    op->session.created_at = now;
    op->session.last_seen_at = now;
    op->session.expires_at = expires_at;
    op->now = now;
    snprintf(op->token_hash, sizeof op->token_hash, "%s", token_hash);
    return op;
}

struct hd_store_op *hd_test_op_api_key(const char *org_id, const char *name, const char *key_hash)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEY_CREATE);
    snprintf(op->api_key.org_id, sizeof op->api_key.org_id, "%s", org_id);
    snprintf(op->org_id, sizeof op->org_id, "%s", org_id);
    op->api_key.name = hd_strdup(name);
    op->api_key.key_hash = hd_strdup(key_hash);
    op->api_key.prefix = hd_strndup(key_hash, 8);
    op->api_key.scopes = hd_strdup("publish");
    op->now = hd_test_unix_ms();
    op->api_key.created_at = op->now;
    return op;
}

struct hd_store_op *hd_test_op_notification(const char *org_id, const char *user_id,
                                            const char *title)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATION_INSERT);
    snprintf(op->notification.org_id, sizeof op->notification.org_id, "%s", org_id);
    snprintf(op->notification.user_id, sizeof op->notification.user_id, "%s",
             user_id ? user_id : "");
    op->notification.type = hd_strdup("test");
    op->notification.title = hd_strdup(title);
    op->notification.body = hd_strdup("body text");
    op->notification.data = hd_strdup("{\"n\":1}");
    op->now = hd_test_unix_ms();
    return op;
}

/* ---- scenario helpers ------------------------------------------------------------ */

static void copy_user(struct hd_user *dst, const struct hd_user *src)
{
    *dst = *src;
    dst->email = src->email ? hd_strdup(src->email) : NULL;
    dst->username = src->username ? hd_strdup(src->username) : NULL;
    dst->display_name = src->display_name ? hd_strdup(src->display_name) : NULL;
    dst->password_hash = src->password_hash ? hd_strdup(src->password_hash) : NULL;
}

void hd_test_store_register(struct hd_store_fixture *f, const char *email, const char *username,
                            struct hd_user *out)
{
    struct hd_store_op *op =
        HD_STORE_EXPECT(f, hd_test_op_register("Org", email, username), HD_STORE_OK);
    cr_assert(hd_test_is_uuid_v4(op->user.id) && hd_test_is_uuid_v4(op->user.org_id),
              "[%s] create_org_and_user ids: user %s org %s", f->name, op->user.id,
              op->user.org_id);
    copy_user(out, &op->user);
    hd_store_op_free(op);
}

void hd_test_store_add_member(struct hd_store_fixture *f, const char *org_id, const char *email,
                              struct hd_user *out)
{
    struct hd_store_op *op = HD_STORE_EXPECT(
        f, hd_test_op_create_user(org_id, email, NULL, HD_ROLE_MEMBER), HD_STORE_OK);
    cr_assert(hd_test_is_uuid_v4(op->user.id), "[%s] create_user id: %s", f->name, op->user.id);
    copy_user(out, &op->user);
    snprintf(out->org_id, sizeof out->org_id, "%s", org_id);
    hd_store_op_free(op);
}

void hd_test_store_new_session(struct hd_store_fixture *f, const struct hd_user *u,
                               int64_t expires_at, char sid[HD_ID_LEN + 1], char *token_hash)
{
    char hash[65];
    hd_test_random_hash(hash);
    struct hd_store_op *op =
        HD_STORE_EXPECT(f, hd_test_op_session(u->id, u->org_id, expires_at, hash), HD_STORE_OK);
    cr_assert(hd_test_is_uuid_v4(op->session.id), "[%s] session id: %s", f->name, op->session.id);
    snprintf(sid, HD_ID_LEN + 1, "%s", op->session.id);
    if (token_hash)
        memcpy(token_hash, hash, sizeof hash);
    hd_store_op_free(op);
}

int64_t hd_test_store_notify(struct hd_store_fixture *f, const char *org_id, const char *user_id,
                             const char *title)
{
    struct hd_store_op *op =
        HD_STORE_EXPECT(f, hd_test_op_notification(org_id, user_id, title), HD_STORE_OK);
    int64_t id = op->notification.id;
    hd_store_op_free(op);
    cr_assert_gt(id, 0, "[%s] notification id %lld", f->name, (long long)id);
    return id;
}
