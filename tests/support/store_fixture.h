/* Store test fixture: a fresh, isolated database for one test, on a chosen
 * backend, with helpers to run store ops synchronously and to build them.
 *
 *   SQLite    a new temp dir holding herald.db; removed at the end.
 *   Postgres  a new schema t_<random hex> in $HERALD_TEST_DATABASE_URL
 *             (plain libpq), opened through the backend with that URL plus
 *             `options=-csearch_path=t_<hex>`; DROP SCHEMA ... CASCADE at
 *             the end. Without HERALD_TEST_DATABASE_URL the test FAILS
 *             (run the suite through scripts/test): a store test that did
 *             not run must never count as passed.
 *
 * Each Criterion test runs in its own process and owns at most one fixture
 * (a static one, handed out by hd_test_store_open). HD_STORE_TEST defines a
 * test body once and registers it for both backends, with
 * hd_test_store_fini as the Criterion .fini, so the database goes away even
 * when an assert ends the test early.
 *
 * Functions that report failures with Criterion asserts must run on the
 * test's thread; the ones marked "any thread" never assert. */
#ifndef HERALD_TEST_STORE_FIXTURE_H
#define HERALD_TEST_STORE_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/store.h"

struct hd_store_backend;
struct hd_store_conn;

enum hd_test_backend { HD_TEST_SQLITE, HD_TEST_POSTGRES };

#define HD_TEST_QUERY_TIMEOUT_MS 5000
#define HD_TEST_MAX_CONNS        16

struct hd_store_fixture {
    enum hd_test_backend kind;
    const char *name;                 /* "sqlite" | "postgres" */
    const struct hd_store_backend *b; /* hd__store_sqlite | hd__store_postgres */
    struct hd_store_conn *conn;       /* the test's connection (migrated unless opened empty) */
    char target[1024];                /* what b->open takes: a file path, or a URL */
    char dir[512];                    /* SQLite: temp dir holding the file */
    char schema[40];                  /* Postgres: "t_<hex>" */
    bool _open;
    struct hd_store_conn *_extra[HD_TEST_MAX_CONNS]; /* from hd_test_store_connect */
};

/**
 * Creates a fresh database on @kind, opens f->conn on it and applies every
 * migration. Returns the process's fixture (borrowed; closed by
 * hd_test_store_fini). Asserts on any failure.
 */
struct hd_store_fixture *hd_test_store_open(enum hd_test_backend kind);

/** Like hd_test_store_open, without applying migrations (an empty database). */
struct hd_store_fixture *hd_test_store_open_empty(enum hd_test_backend kind);

/**
 * Closes every connection the fixture knows of and removes the database
 * (temp dir / schema). Safe to call with no fixture open and to call twice:
 * use it as Criterion's .fini.
 */
void hd_test_store_fini(void);

/** Opens one more connection to the fixture's database (asserts); the fixture
 * closes it at the end unless hd_test_store_disconnect did before. */
struct hd_store_conn *hd_test_store_connect(struct hd_store_fixture *f);

/** Closes @c (from hd_test_store_connect or hd_test_store_try_connect). */
void hd_test_store_disconnect(struct hd_store_fixture *f, struct hd_store_conn *c);

/**
 * Opens a connection to the fixture's database, or returns NULL with a
 * reason in @err. Any thread (also a forked child); the caller closes it
 * with f->b->close or hd_test_store_disconnect.
 */
struct hd_store_conn *hd_test_store_try_connect(const struct hd_store_fixture *f, char *err,
                                                size_t cap);

/** Applies pending migrations on @c (asserts no error); returns how many. */
int hd_test_store_migrate(struct hd_store_fixture *f, struct hd_store_conn *c);

/** Runs @op on f->conn through b->exec, synchronously; returns its status. */
enum hd_store_status hd_test_store_exec(struct hd_store_fixture *f, struct hd_store_op *op);

/** Runs @op on @c (any connection to the fixture's database). Any thread. */
enum hd_store_status hd_test_store_exec_on(const struct hd_store_fixture *f,
                                           struct hd_store_conn *c, struct hd_store_op *op);

/**
 * Runs @op on f->conn and asserts its status is @want (the message names the
 * op, both statuses, the conflict field and the caller's line). Returns @op,
 * still owned by the caller.
 */
#define HD_STORE_EXPECT(f, op, want) hd_test_store__expect((f), (op), (want), __FILE__, __LINE__)
struct hd_store_op *hd_test_store__expect(struct hd_store_fixture *f, struct hd_store_op *op,
                                          enum hd_store_status want, const char *file, int line);

/** Like HD_STORE_EXPECT, then frees @op. */
#define HD_STORE_EXPECT_FREE(f, op, want)                                                          \
    hd_store_op_free(hd_test_store__expect((f), (op), (want), __FILE__, __LINE__))

/* ---- raw SQL, beside the backend (plain sqlite3 / libpq) ----------------- */

/** Runs @sql (one row, one integer column) on a separate raw connection to
 * the fixture's database; asserts it works. */
int64_t hd_test_store_sql_int(struct hd_store_fixture *f, const char *sql);

/** Runs @sql and returns column 0 of every row as integers in *@out (caller
 * frees); returns the row count. Asserts it works. */
size_t hd_test_store_sql_ints(struct hd_store_fixture *f, const char *sql, int64_t **out);

/** Runs @sql and returns column 0 of every row, one per line (NULL as
 * "(null)"); the caller frees. Asserts it works. */
char *hd_test_store_sql_text(struct hd_store_fixture *f, const char *sql);

/* ---- values --------------------------------------------------------------- */

/** Unix time in milliseconds (the store's time base). */
int64_t hd_test_unix_ms(void);

/** True when @s is a lower-case UUIDv4 ("xxxxxxxx-xxxx-4xxx-[89ab]xxx-…"). */
bool hd_test_is_uuid_v4(const char *s);

/** Writes 64 random lower-case hex characters and a NUL into @out. */
void hd_test_random_hash(char out[65]);

/** Writes a unique address "<prefix>-<random>@example.com" into @out. */
void hd_test_unique_email(char *out, size_t cap, const char *prefix);

/* ---- op builders (every string copied into the op) ------------------------ */

/** HD_OP_CREATE_ORG_AND_USER for @email, @username (NULL: none), with a
 * display name and a fixed password hash. */
struct hd_store_op *hd_test_op_register(const char *org_name, const char *email,
                                        const char *username);

/** HD_OP_CREATE_USER in @org_id. */
struct hd_store_op *hd_test_op_create_user(const char *org_id, const char *email,
                                           const char *username, enum hd_role role);

/** An op of @kind with op->id = @id (find/touch/revoke/…) and op->now = @now. */
struct hd_store_op *hd_test_op_id(enum hd_store_op_kind kind, const char *id, int64_t now);

/** HD_OP_SESSION_CREATE for @user_id in @org_id, first refresh token
 * @token_hash, expiring at @expires_at; created "now" (hd_test_unix_ms). */
struct hd_store_op *hd_test_op_session(const char *user_id, const char *org_id, int64_t expires_at,
                                       const char *token_hash);

/** HD_OP_API_KEY_CREATE in @org_id (prefix = first 8 hash chars, scopes "publish"). */
struct hd_store_op *hd_test_op_api_key(const char *org_id, const char *name, const char *key_hash);

/** HD_OP_NOTIFICATION_INSERT in @org_id for @user_id (NULL or "": the whole
 * organization), type "test", @title, a body and data {"n":1}. */
struct hd_store_op *hd_test_op_notification(const char *org_id, const char *user_id,
                                            const char *title);

/* ---- scenario helpers (assert HD_STORE_OK) --------------------------------- */

/** Registers a new organization with its admin @email / @username; copies the
 * new user into @out (free its strings with hd_user_clear). */
void hd_test_store_register(struct hd_store_fixture *f, const char *email, const char *username,
                            struct hd_user *out);

/** Adds a member to @org_id; copies the user into @out (hd_user_clear). */
void hd_test_store_add_member(struct hd_store_fixture *f, const char *org_id, const char *email,
                              struct hd_user *out);

/** Creates a session for @u expiring at @expires_at with a fresh random
 * refresh token (written to @token_hash when not NULL); writes the session
 * id to @sid. */
void hd_test_store_new_session(struct hd_store_fixture *f, const struct hd_user *u,
                               int64_t expires_at, char sid[HD_ID_LEN + 1], char *token_hash);

/** Inserts a notification (see hd_test_op_notification); returns its id. */
int64_t hd_test_store_notify(struct hd_store_fixture *f, const char *org_id, const char *user_id,
                             const char *title);

/* ---- both backends -------------------------------------------------------- */

/**
 * Defines the body `static void NAME(struct hd_store_fixture *f)` once and
 * registers it as two tests, NAME_sqlite and NAME_postgres, each on a fresh
 * migrated database; extra Criterion options (.timeout = …) follow NAME.
 */
#define HD_STORE_TEST(suite, name, ...)                                                            \
    static void name(struct hd_store_fixture *f);                                                  \
    Test(suite, name##_sqlite, .fini = hd_test_store_fini, __VA_ARGS__)                            \
    {                                                                                              \
        name(hd_test_store_open(HD_TEST_SQLITE));                                                  \
    }                                                                                              \
    Test(suite, name##_postgres, .fini = hd_test_store_fini, __VA_ARGS__)                          \
    {                                                                                              \
        name(hd_test_store_open(HD_TEST_POSTGRES));                                                \
    }                                                                                              \
    static void name(struct hd_store_fixture *f)

#endif
