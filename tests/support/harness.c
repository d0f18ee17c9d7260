/* Integration-test harness: see harness.h. */
#include "harness.h"
#include "herald/core.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>

#include "http_client.h"

extern char **environ;

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS  15000

/* Servers started by this process and not yet reaped: killed at exit so a
 * failed assert (which ends the test early) never leaves one running. Kept
 * by value: the test's own struct may be gone by then. */
struct live_server {
    pid_t pid;
    char log_path[600];
};
static struct live_server g_live[16];

uint64_t hd_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hd_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *hd_test_herald_bin(void)
{
    const char *bin = getenv("HERALD_BIN");
    cr_assert(bin && *bin, "HERALD_BIN is not set (run through ctest)");
    cr_assert(access(bin, X_OK) == 0, "HERALD_BIN=%s is not executable", bin);
    return bin;
}

const char *hd_test_secret(void)
{
    static char secret[49];
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (secret[0])
        return secret;
    unsigned char raw[48];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0 && read(fd, raw, sizeof raw) == (ssize_t)sizeof raw, "urandom");
    close(fd);
    for (size_t i = 0; i < sizeof raw; i++)
        secret[i] = alphabet[raw[i] % (sizeof alphabet - 1)];
    secret[48] = '\0';
    return secret;
}

json_t *hd_test_base_config(void)
{
    /* The embedded SQLite store (var/herald.db under the server's own temp
     * dir), migrated at start as in the dev config; a small pool. Rate
     * limits off: suites log in many times from 127.0.0.1; the rate-limit
     * suites turn them on. */
    json_t *cfg = json_pack("{s:b, s:{s:s}, s:{s:b}, s:{s:b, s:i}, s:{s:b}}", "dev_mode", 1, "jwt",
                            "secret", hd_test_secret(), "log", "access", 1, "store", "auto_migrate",
                            1, "pool_size", 2, "ratelimit", "enabled", 0);
    cr_assert(cfg, "json_pack of the base config");
    return cfg;
}

json_t *hd_test_config(const char *overrides)
{
    json_t *cfg = hd_test_base_config();
    if (!overrides || !*overrides)
        return cfg;
    json_error_t err;
    json_t *over = json_loads(overrides, 0, &err);
    cr_assert(over && json_is_object(over), "overrides are not a JSON object (%s): %s", err.text,
              overrides);
    cr_assert(json_object_update_recursive(cfg, over) == 0, "merging overrides");
    json_decref(over);
    return cfg;
}

void hd_test_make_dir(char *dir, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/herald-it-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

void hd_test_write_json(const char *path, json_t *cfg)
{
    cr_assert(json_dump_file(cfg, path, JSON_INDENT(2)) == 0, "writing %s", path);
}

/* The environment for herald: ours without HERALD_*, plus @extra. */
static char **child_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    cr_assert(env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "HERALD_", 7) != 0)
            env[k++] = environ[i];
    for (size_t i = 0; i < m; i++)
        env[k++] = (char *)extra[i];
    env[k] = NULL;
    return env;
}

/* Forks and execs herald with @argv in @cwd, output to @out_fd. In the
 * child only async-signal-safe calls until exec. */
static pid_t spawn(char *const *argv, char *const *envp, const char *cwd, int out_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (chdir(cwd) != 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(127);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    execve(argv[0], argv, envp);
    _exit(127);
}

static void track(const struct hd_test_server *s, pid_t pid, bool on)
{
    for (size_t i = 0; i < sizeof g_live / sizeof g_live[0]; i++) {
        if (on && g_live[i].pid <= 0) {
            g_live[i].pid = pid;
            snprintf(g_live[i].log_path, sizeof g_live[i].log_path, "%s", s->log_path);
            return;
        }
        if (!on && g_live[i].pid == pid)
            g_live[i].pid = 0;
    }
}

/* Dirs of servers that exited 0, removed when the test process exits (a
 * test may still read the log after stopping the server). */
static char g_cleanup[16][512];

static void remove_at_exit(const char *dir)
{
    for (size_t i = 0; i < sizeof g_cleanup / sizeof g_cleanup[0]; i++) {
        if (!g_cleanup[i][0]) {
            snprintf(g_cleanup[i], sizeof g_cleanup[i], "%s", dir);
            return;
        }
    }
}

static void at_exit(void)
{
    for (size_t i = 0; i < sizeof g_live / sizeof g_live[0]; i++) {
        struct live_server *l = &g_live[i];
        if (l->pid > 0) {
            kill(l->pid, SIGKILL);
            waitpid(l->pid, NULL, 0);
            fprintf(stderr, "herald test: server killed at exit; log kept in %s\n", l->log_path);
            l->pid = 0;
        }
    }
    for (size_t i = 0; i < sizeof g_cleanup / sizeof g_cleanup[0]; i++) {
        if (g_cleanup[i][0] && !getenv("HERALD_TEST_KEEP"))
            hd_test_remove_dir(g_cleanup[i]);
        g_cleanup[i][0] = '\0';
    }
}

static void dump_log(const struct hd_test_server *s)
{
    char *log = hd_test_server_log(s);
    size_t len = strlen(log);
    const char *from = len > 8000 ? log + len - 8000 : log;
    fprintf(stderr, "---- %s (last %zu bytes) ----\n%s\n---- end of log ----\n", s->log_path,
            strlen(from), from);
    free(log);
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* Reaps the server if it has exited; true when it has. */
static bool reap(struct hd_test_server *s, int flags)
{
    if (s->pid <= 0)
        return true;
    int status;
    pid_t r;
    do {
        r = waitpid(s->pid, &status, flags);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    s->exit_status = r == s->pid ? decode_status(status) : 255;
    track(s, s->pid, false);
    s->pid = -1;
    return true;
}

/* Scans the log for {"msg":"listening","addr":"…:PORT"}; 0 when not yet. */
static int find_listening_port(const struct hd_test_server *s)
{
    char *log = hd_test_server_log(s);
    int port = 0;
    for (char *line = strtok(log, "\n"); line && !port; line = strtok(NULL, "\n")) {
        if (!strstr(line, "\"listening\""))
            continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        const char *addr = json_string_value(json_object_get(j, "addr"));
        const char *colon = addr ? strrchr(addr, ':') : NULL;
        if (msg && strcmp(msg, "listening") == 0 && colon)
            port = atoi(colon + 1);
        json_decref(j);
    }
    free(log);
    return port;
}

static void wait_listening(struct hd_test_server *s)
{
    uint64_t deadline = hd_test_now_ms() + START_TIMEOUT_MS;
    while (!(s->port = find_listening_port(s))) {
        if (reap(s, WNOHANG)) {
            dump_log(s);
            cr_assert_fail("herald exited with %d before listening", s->exit_status);
        }
        if (hd_test_now_ms() > deadline) {
            dump_log(s);
            cr_assert_fail("no \"listening\" log line within %d ms", START_TIMEOUT_MS);
        }
        hd_test_sleep_ms(20);
    }
}

static void wait_healthy(struct hd_test_server *s)
{
    uint64_t deadline = hd_test_now_ms() + START_TIMEOUT_MS;
    int last = 0;
    for (;;) {
        struct hd_http_response r;
        last = hd_http_get(s->port, "/healthz", &r, 2000);
        if (last == 0) {
            int status = r.status;
            hd_http_response_free(&r);
            if (status == 200)
                return;
            last = status;
        }
        if (hd_test_now_ms() > deadline || reap(s, WNOHANG)) {
            dump_log(s);
            cr_assert_fail("GET /healthz never answered 200 (last: %d)", last);
        }
        hd_test_sleep_ms(50);
    }
}

/* With HERALD_TEST_STORE=postgres (ctest's *_postgres variants), a server
 * whose test does not choose a store gets a fresh Postgres database instead
 * of the embedded SQLite one, so the same test runs on both backends. */
static void choose_store(json_t *cfg)
{
    const char *want = getenv("HERALD_TEST_STORE");
    if (!want || strcmp(want, "postgres") != 0)
        return;
    json_t *store = json_object_get(cfg, "store");
    const char *chosen = json_string_value(json_object_get(store, "database_url"));
    if ((chosen && *chosen) || json_object_get(store, "sqlite_path"))
        return; /* the test chose its store */
    const char *url = getenv("HERALD_TEST_DATABASE_URL");
    cr_assert(url && *url, "HERALD_TEST_STORE=postgres needs HERALD_TEST_DATABASE_URL: run "
                           "the suite with scripts/test (it starts Postgres)");
    unsigned char rnd[4];
    cr_assert_eq(hd_random_bytes(rnd, sizeof rnd), 0);
    char name[64], sql[128], db_url[1024];
    snprintf(name, sizeof name, "herald_it_%d_%02x%02x%02x%02x", (int)getpid(), rnd[0], rnd[1],
             rnd[2], rnd[3]);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    const char *slash = strrchr(url, '/');
    cr_assert(slash, "unexpected HERALD_TEST_DATABASE_URL shape");
    const char *query = strchr(slash, '?');
    snprintf(db_url, sizeof db_url, "%.*s/%s%s", (int)(slash - url), url, name, query ? query : "");
    if (!store) {
        store = json_object();
        json_object_set_new(cfg, "store", store);
    }
    json_object_set_new(store, "database_url", json_string(db_url));
}

void hd_test_server_start_ex(struct hd_test_server *s, const char *overrides,
                             const char *const *extra_env, bool healthy)
{
    static bool atexit_done;
    if (!atexit_done) {
        atexit(at_exit);
        atexit_done = true;
    }
    memset(s, 0, sizeof *s);
    s->pid = -1;
    hd_test_make_dir(s->dir, sizeof s->dir);
    snprintf(s->config_path, sizeof s->config_path, "%s/herald.json", s->dir);
    snprintf(s->log_path, sizeof s->log_path, "%s/herald.log", s->dir);

    json_t *cfg = hd_test_config(overrides);
    choose_store(cfg);
    hd_test_write_json(s->config_path, cfg);
    json_decref(cfg);

    int log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(log_fd >= 0, "open %s: %s", s->log_path, strerror(errno));
    char *argv[] = {(char *)hd_test_herald_bin(),
                    "serve",
                    "--config",
                    s->config_path,
                    "--listen",
                    "127.0.0.1:0",
                    NULL};
    char **env = child_env(extra_env);
    s->pid = spawn(argv, env, s->dir, log_fd);
    free(env);
    close(log_fd);
    track(s, s->pid, true);

    wait_listening(s);
    if (healthy)
        wait_healthy(s);
}

void hd_test_server_start(struct hd_test_server *s, const char *overrides)
{
    hd_test_server_start_ex(s, overrides, NULL, true);
}

int hd_test_server_signal(struct hd_test_server *s, int sig)
{
    if (s->pid <= 0)
        return -ESRCH;
    return kill(s->pid, sig) == 0 ? 0 : -errno;
}

int hd_test_server_wait(struct hd_test_server *s, int timeout_ms)
{
    uint64_t deadline = hd_test_now_ms() + (uint64_t)timeout_ms;
    while (!reap(s, WNOHANG)) {
        if (hd_test_now_ms() >= deadline)
            return -ETIMEDOUT;
        hd_test_sleep_ms(10);
    }
    return s->exit_status;
}

int hd_test_server_stop(struct hd_test_server *s)
{
    if (s->pid > 0)
        kill(s->pid, SIGTERM);
    int code = hd_test_server_wait(s, STOP_TIMEOUT_MS);
    if (code == -ETIMEDOUT) {
        kill(s->pid, SIGKILL);
        reap(s, 0);
        dump_log(s);
        cr_assert_fail("herald did not exit within %d ms of SIGTERM", STOP_TIMEOUT_MS);
    }
    if (code != 0)
        dump_log(s);
    else
        remove_at_exit(s->dir);
    return code;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    cr_assert(buf);
    if (f) {
        size_t n;
        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len < 2) {
                cap *= 2;
                buf = realloc(buf, cap);
                cr_assert(buf);
            }
        }
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

char *hd_test_server_log(const struct hd_test_server *s)
{
    return read_file(s->log_path);
}

bool hd_test_log_contains(const struct hd_test_server *s, const char *needle)
{
    char *log = hd_test_server_log(s);
    bool found = strstr(log, needle) != NULL;
    free(log);
    return found;
}

bool hd_test_log_wait_for(const struct hd_test_server *s, const char *needle, int timeout_ms)
{
    uint64_t deadline = hd_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (hd_test_log_contains(s, needle))
            return true;
        if (hd_test_now_ms() >= deadline)
            return false;
        hd_test_sleep_ms(20);
    }
}

static json_t *log_scan(const struct hd_test_server *s, const char *key, const char *value)
{
    char *log = hd_test_server_log(s);
    json_t *found = NULL;
    for (char *line = strtok(log, "\n"); line && !found; line = strtok(NULL, "\n")) {
        if (!strstr(line, value))
            continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *v = json_string_value(json_object_get(j, key));
        if (v && strcmp(v, value) == 0)
            found = j;
        else
            json_decref(j);
    }
    free(log);
    return found;
}

json_t *hd_test_log_find(const struct hd_test_server *s, const char *key, const char *value,
                         int timeout_ms)
{
    uint64_t deadline = hd_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        json_t *j = log_scan(s, key, value);
        if (j || hd_test_now_ms() >= deadline)
            return j;
        hd_test_sleep_ms(20);
    }
}

int hd_test_run_herald(const char *const *args, const char *cwd, int timeout_ms, char **output)
{
    char out_path[PATH_MAX];
    snprintf(out_path, sizeof out_path, "%s/.herald-run-%d.out", cwd, (int)getpid());
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(fd >= 0, "open %s: %s", out_path, strerror(errno));

    size_t n = 0;
    while (args[n])
        n++;
    char **argv = calloc(n + 2, sizeof *argv);
    cr_assert(argv);
    argv[0] = (char *)hd_test_herald_bin();
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = (char *)args[i];
    char **env = child_env(NULL);

    struct hd_test_server proc = {.pid = spawn(argv, env, cwd, fd)};
    close(fd);
    free(env);
    free(argv);
    int code = hd_test_server_wait(&proc, timeout_ms);
    if (code == -ETIMEDOUT) {
        kill(proc.pid, SIGKILL);
        reap(&proc, 0);
    }
    if (output)
        *output = read_file(out_path);
    unlink(out_path);
    return code;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

void hd_test_remove_dir(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
