/* `herald admin create --email E --org NAME [--username U] --config FILE`,
 * password on stdin: creates an organization and its admin, prints the user
 * id; the admin then logs in through the server. A taken email exits 1 and
 * says email_taken; bad input exits 2; a password is never taken from argv;
 * an outdated schema without auto_migrate exits 1 naming `herald migrate`.
 *
 * hd_test_run_herald gives the child /dev/null as stdin, so this file runs
 * herald itself with a pipe. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "test_account_client.h"

extern char **environ;

struct cli_result {
    int code; /* exit code, 128 + signal, or -ETIMEDOUT */
    char out[4096];
    char err[16384];
};

/* Appends what @fd has to @buf; returns false at EOF. */
static bool drain(int fd, char *buf, size_t cap)
{
    size_t len = strlen(buf);
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n <= 0)
        return false;
    buf[len + (size_t)n] = '\0';
    return true;
}

/* Runs $HERALD_BIN with @args (NULL-terminated, without argv[0]) in @cwd,
 * @input on stdin (then closed), HERALD_* dropped from the environment. */
static void run_cli(const char *const *args, const char *cwd, const char *input,
                    struct cli_result *res)
{
    memset(res, 0, sizeof(*res));
    const char *argv[16] = {hd_test_herald_bin()};
    for (int i = 0; args[i]; i++) {
        cr_assert(i < 14);
        argv[i + 1] = args[i];
    }
    char *env[256];
    size_t k = 0;
    for (size_t i = 0; environ[i] && k < 255; i++) {
        if (strncmp(environ[i], "HERALD_", 7) != 0)
            env[k++] = environ[i];
    }
    env[k] = NULL;
    int in[2], out[2], err[2];
    cr_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
              pipe2(err, O_CLOEXEC) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        if (chdir(cwd) != 0 || dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            _exit(127);
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    signal(SIGPIPE, SIG_IGN);
    if (input && write(in[1], input, strlen(input)) != (ssize_t)strlen(input))
        cr_log_warn("stdin: short write\n");
    close(in[1]);
    uint64_t deadline = hd_test_now_ms() + 30000;
    bool out_open = true, err_open = true;
    while ((out_open || err_open) && hd_test_now_ms() < deadline) {
        struct pollfd pf[2] = {{out_open ? out[0] : -1, POLLIN, 0},
                               {err_open ? err[0] : -1, POLLIN, 0}};
        if (poll(pf, 2, 200) <= 0)
            continue;
        if (pf[0].revents)
            out_open = drain(out[0], res->out, sizeof(res->out));
        if (pf[1].revents)
            err_open = drain(err[0], res->err, sizeof(res->err));
    }
    close(out[0]);
    close(err[0]);
    int status;
    if (out_open || err_open) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        res->code = -ETIMEDOUT;
        return;
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    res->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool is_uuid_line(const char *s)
{
    if (strlen(s) != 37 || s[36] != '\n')
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* Writes DIR/herald.json whose "store" object holds the JSON members
 * @store; the overrides used go to @overrides (for a server sharing it). */
static void write_config(const char *dir, char *cfg_path, size_t ccap, char *overrides, size_t ocap,
                         const char *store)
{
    snprintf(cfg_path, ccap, "%s/herald.json", dir);
    snprintf(overrides, ocap, "{\"store\":{%s}}", store);
    json_t *cfg = hd_test_config(overrides);
    hd_test_write_json(cfg_path, cfg);
    json_decref(cfg);
}

/* A temp dir and its config on the embedded store at DIR/herald.db
 * (absolute, so a server started elsewhere can share it). */
static void setup(char *dir, size_t dcap, char *cfg_path, size_t ccap, char *overrides, size_t ocap,
                  bool auto_migrate)
{
    hd_test_make_dir(dir, dcap);
    char store[700];
    snprintf(store, sizeof(store), "\"sqlite_path\":\"%s/herald.db\",\"auto_migrate\":%s", dir,
             auto_migrate ? "true" : "false");
    write_config(dir, cfg_path, ccap, overrides, ocap, store);
}

Test(account_admin_cli, create_then_log_in, .timeout = 120)
{
    char dir[256], cfg[300], overrides[600], email[128], upper[128];
    setup(dir, sizeof(dir), cfg, sizeof(cfg), overrides, sizeof(overrides), true);
    acct_email(email, sizeof(email), "boss");
    struct cli_result res;
    const char *args[] = {"admin",      "create",   "--email",  email, "--org", "Acme Inc",
                          "--username", "the_boss", "--config", cfg,   NULL};
    run_cli(args, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 0, "exit %d\nstdout: %s\nstderr: %s", res.code, res.out, res.err);
    cr_assert(is_uuid_line(res.out), "stdout is not one user id: [%s]", res.out);
    cr_assert(strstr(res.err, ACCT_PASSWORD) == NULL, "the password was echoed: %s", res.err);
    char id[40];
    snprintf(id, sizeof(id), "%.36s", res.out);

    /* the same email, in another case: refused, said clearly */
    snprintf(upper, sizeof(upper), "%s", email);
    upper[0] = (char)(upper[0] - 32);
    const char *again[] = {"admin", "create",   "--email", upper, "--org",
                           "Other", "--config", cfg,       NULL};
    run_cli(again, dir, ACCT_PASSWORD "\r\n", &res);
    cr_assert_eq(res.code, 1, "exit %d: %s", res.code, res.err);
    cr_assert(strstr(res.err, "email_taken"), "stderr: %s", res.err);
    cr_assert_str_eq(res.out, "", "stdout: %s", res.out);

    /* the server sees an admin who can log in and act as one */
    struct hd_test_server s;
    hd_test_server_start(&s, overrides);
    struct acct_user boss;
    cr_assert_eq(acct_login(s.port, email, ACCT_PASSWORD, &boss), 200);
    cr_assert_str_eq(boss.id, id);
    struct hd_http_response r = acct_send(s.port, "GET", "/api/me", boss.access, NULL);
    json_t *me = acct_json(&r, 200);
    cr_assert_str_eq(acct_str(me, "role"), "admin");
    cr_assert_str_eq(acct_str(me, "username"), "the_boss");
    json_decref(me);
    cr_assert_eq(acct_status(s.port, "GET", "/api/keys", boss.access, NULL), 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    hd_test_remove_dir(dir);
}

Test(account_admin_cli, refuses_bad_input_with_exit_2, .timeout = 60)
{
    char dir[256], cfg[300], overrides[600];
    setup(dir, sizeof(dir), cfg, sizeof(cfg), overrides, sizeof(overrides), true);
    struct cli_result res;
    const char *e = "ok@example.test";

    const char *short_pw[] = {"admin", "create", "--email", e, "--org", "O", "--config", cfg, NULL};
    run_cli(short_pw, dir, "short\n", &res);
    cr_assert_eq(res.code, 2, "short password: exit %d %s", res.code, res.err);
    cr_assert(strstr(res.err, "password"), "%s", res.err);
    run_cli(short_pw, dir, "", &res);
    cr_assert_eq(res.code, 2, "no stdin: exit %d %s", res.code, res.err);
    run_cli(short_pw, dir, "OK@EXAMPLE.TEST\n", &res);
    cr_assert_eq(res.code, 2, "password = email: exit %d %s", res.code, res.err);
    char long_pw[200];
    memset(long_pw, 'x', 129);
    snprintf(long_pw + 129, sizeof(long_pw) - 129, "\n");
    run_cli(short_pw, dir, long_pw, &res);
    cr_assert_eq(res.code, 2, "129 bytes: exit %d %s", res.code, res.err);

    const char *argv_pw[] = {"admin",      "create",      "--email",  e,   "--org", "O",
                             "--password", ACCT_PASSWORD, "--config", cfg, NULL};
    run_cli(argv_pw, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 2, "--password: exit %d %s", res.code, res.err);
    cr_assert(strstr(res.err, "stdin"), "%s", res.err);

    const char *no_org[] = {"admin", "create", "--email", e, "--config", cfg, NULL};
    run_cli(no_org, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 2, "no --org: exit %d %s", res.code, res.err);
    const char *bad_email[] = {"admin", "create",   "--email", "nope", "--org",
                               "O",     "--config", cfg,       NULL};
    run_cli(bad_email, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 2, "bad email: exit %d %s", res.code, res.err);
    const char *bad_user[] = {"admin",      "create", "--email",  e,   "--org", "O",
                              "--username", "a b",    "--config", cfg, NULL};
    run_cli(bad_user, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 2, "bad username: exit %d %s", res.code, res.err);
    const char *bad_verb[] = {"admin", "delete", "--config", cfg, NULL};
    run_cli(bad_verb, dir, "", &res);
    cr_assert_eq(res.code, 2, "admin delete: exit %d %s", res.code, res.err);
    hd_test_remove_dir(dir);
}

Test(account_admin_cli, outdated_schema_exits_1, .timeout = 60)
{
    char dir[256], cfg[300], overrides[600];
    setup(dir, sizeof(dir), cfg, sizeof(cfg), overrides, sizeof(overrides), false);
    struct cli_result res;
    const char *args[] = {"admin",    "create", "--email", "x@example.test", "--org", "O",
                          "--config", cfg,      NULL};
    run_cli(args, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 1, "exit %d %s", res.code, res.err);
    cr_assert(strstr(res.err, "herald migrate"), "%s", res.err);
    cr_assert_str_eq(res.out, "");
    hd_test_remove_dir(dir);
}

/* The same command on Postgres: created once, the second time email_taken
 * (the unique index ignores case); the admin logs in through a server. */
Test(account_admin_cli, create_on_postgres, .timeout = 120, .fini = acct_pg_fini)
{
    char url[600], store[800], dir[256], cfg[300], overrides[1200], email[128];
    acct_pg_create(url, sizeof(url));
    snprintf(store, sizeof(store), "\"database_url\":\"%s\",\"auto_migrate\":true", url);
    hd_test_make_dir(dir, sizeof(dir));
    write_config(dir, cfg, sizeof(cfg), overrides, sizeof(overrides), store);
    acct_email(email, sizeof(email), "pgboss");
    struct cli_result res;
    const char *args[] = {"admin", "create",   "--email", email, "--org",
                          "PG",    "--config", cfg,       NULL};
    run_cli(args, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 0, "exit %d\nstdout: %s\nstderr: %s", res.code, res.out, res.err);
    cr_assert(is_uuid_line(res.out), "stdout: [%s]", res.out);
    email[0] = (char)(email[0] - 32);
    run_cli(args, dir, ACCT_PASSWORD "\n", &res);
    cr_assert_eq(res.code, 1, "exit %d: %s", res.code, res.err);
    cr_assert(strstr(res.err, "email_taken"), "stderr: %s", res.err);

    struct hd_test_server s;
    hd_test_server_start(&s, overrides);
    struct acct_user boss;
    cr_assert_eq(acct_login(s.port, email, ACCT_PASSWORD, &boss), 200);
    cr_assert_eq(acct_status(s.port, "GET", "/api/keys", boss.access, NULL), 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    hd_test_remove_dir(dir);
}
