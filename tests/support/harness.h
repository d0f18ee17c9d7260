/* Integration-test harness: runs a real herald binary on 127.0.0.1 with a
 * throw-away config in a fresh temp dir, and runs herald's other commands.
 *
 * The binary is $HERALD_BIN. Every server gets port 0 (the kernel picks a
 * free one; tests run in parallel processes) and its own directory holding
 * herald.json, herald.log (stdout + stderr) and whatever herald writes under
 * its working directory. The child gets PR_SET_PDEATHSIG, so a test process
 * that dies never leaves a server behind.
 *
 * Functions that take no error return report failures with Criterion
 * asserts: call them only from a test's thread. */
#ifndef HERALD_TEST_HARNESS_H
#define HERALD_TEST_HARNESS_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct hd_test_server {
    pid_t pid;       /* -1 once reaped */
    int port;        /* the port herald reported in its "listening" line */
    int exit_status; /* after reaping: exit code, or 128 + signal */
    char dir[512];   /* temp dir, herald's cwd */
    char config_path[600];
    char log_path[600];
};

/** Monotonic milliseconds. */
uint64_t hd_test_now_ms(void);

/** Sleeps @ms milliseconds. */
void hd_test_sleep_ms(int ms);

/** The herald binary ($HERALD_BIN); asserts it is set. Borrowed. */
const char *hd_test_herald_bin(void);

/**
 * The base config every test starts from: dev_mode true, a fresh random
 * 48-character jwt.secret (one per process), log.access true, the embedded
 * SQLite store with store.auto_migrate true and a pool of 2, ratelimit.enabled
 * false. Returns a new reference.
 */
json_t *hd_test_base_config(void);

/** The per-process random jwt.secret of hd_test_base_config. Borrowed. */
const char *hd_test_secret(void);

/**
 * Returns a new reference: the base config merged (recursively) with the
 * JSON object text @overrides (NULL or "" for none). Asserts it parses.
 */
json_t *hd_test_config(const char *overrides);

/** Creates a fresh temp dir and writes its path to @dir (@cap bytes). */
void hd_test_make_dir(char *dir, size_t cap);

/** Writes @cfg (borrowed) as JSON to @path. */
void hd_test_write_json(const char *path, json_t *cfg);

/**
 * Starts `herald serve --config DIR/herald.json --listen 127.0.0.1:0` with
 * the base config merged with @overrides (JSON object text, or NULL), waits
 * for its "listening" log line and then for GET /healthz to answer 200
 * (about 10 s each at most). Asserts on any failure, showing the log.
 */
void hd_test_server_start(struct hd_test_server *s, const char *overrides);

/**
 * Like hd_test_server_start, plus @extra_env ("NAME=value" strings,
 * NULL-terminated, may be NULL) in the child's environment. Any HERALD_*
 * variable of the test's own environment is dropped, so the config alone
 * decides. Set @wait_healthy false to return right after "listening".
 */
void hd_test_server_start_ex(struct hd_test_server *s, const char *overrides,
                             const char *const *extra_env, bool wait_healthy);

/** Sends @sig to the server. Returns 0 or -errno. */
int hd_test_server_signal(struct hd_test_server *s, int sig);

/**
 * Waits up to @timeout_ms for the server to exit. Returns its exit code
 * (128 + signal when killed), or -ETIMEDOUT while it still runs.
 */
int hd_test_server_wait(struct hd_test_server *s, int timeout_ms);

/**
 * Stops the server: SIGTERM, then up to 15 s to exit; past that SIGKILL and
 * a test failure. Returns the exit code (128 + signal when killed by one),
 * so tests can assert 0. Prints the log to stderr when the code is not 0;
 * removes the temp dir when it is 0 (unless HERALD_TEST_KEEP is set).
 * Safe to call on a server that has already exited.
 */
int hd_test_server_stop(struct hd_test_server *s);

/** The whole log so far, NUL-terminated; the caller frees it. */
char *hd_test_server_log(const struct hd_test_server *s);

/** True when @needle occurs anywhere in the log. */
bool hd_test_log_contains(const struct hd_test_server *s, const char *needle);

/** Polls the log up to @timeout_ms until @needle occurs; true when it does. */
bool hd_test_log_wait_for(const struct hd_test_server *s, const char *needle, int timeout_ms);

/**
 * Polls up to @timeout_ms for a JSON log line whose string field @key
 * equals @value. Returns that line as a new reference, or NULL.
 */
json_t *hd_test_log_find(const struct hd_test_server *s, const char *key, const char *value,
                         int timeout_ms);

/**
 * Runs $HERALD_BIN with @args (NULL-terminated, without argv[0]) in @cwd,
 * stdout and stderr captured together into *@output (caller frees; may be
 * NULL to discard). Kills it after @timeout_ms. Returns the exit code, 128 +
 * signal when killed by one, or -ETIMEDOUT.
 */
int hd_test_run_herald(const char *const *args, const char *cwd, int timeout_ms, char **output);

/** Removes @dir and everything under it. */
void hd_test_remove_dir(const char *dir);

#endif
