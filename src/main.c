/* herald command line: serve, check-config, version.
 *
 * Exit codes: 0 success; 1 runtime failure (cannot listen…); 2 bad usage or
 * a configuration that is refused. */
#include "api/api.h"
#include "herald/broadcaster.h"
#include "herald/ratelimit.h"
#include "api/routes.h"
#include "herald/auth.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/echo.h"
#include "herald/log.h"
#include "herald/ops.h"
#include "herald/password.h"
#include "herald/server.h"
#include "herald/session.h"
#include "herald/store.h"
#include "herald/store_http.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HERALD_VERSION "0.1.0"

extern char **environ;

struct cli {
    const char *command;
    const char *config;
    const char *listen;
    bool status; /* migrate --status */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: herald serve --config FILE [--listen HOST:PORT]\n"
            "       herald check-config --config FILE [--listen HOST:PORT]\n"
            "       herald migrate --config FILE [--status]\n"
            "       herald hash-cost --config FILE   (ms per password hash here)\n"
            "       herald admin create --email E --org NAME [--username U]\n"
            "                           [--display-name D] --config FILE  (password on stdin)\n"
            "       herald version\n");
}

static int parse_cli(int argc, char **argv, struct cli *cli)
{
    if (argc < 2)
        return -EINVAL;
    cli->command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--status") == 0) {
            cli->status = true;
            continue;
        }
        if (strcmp(a, "--config") == 0)
            dst = &cli->config;
        else if (strcmp(a, "--listen") == 0)
            dst = &cli->listen;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "herald: unknown or incomplete argument: %s\n", a);
            return -EINVAL;
        }
        *dst = argv[++i];
    }
    return 0;
}

/* The key a problem line names: the text before the first ':'. */
static void problem_key(const char *line, char *key, size_t cap)
{
    size_t n = strcspn(line, ":");
    if (n >= cap)
        n = cap - 1;
    memcpy(key, line, n);
    key[n] = '\0';
}

/* Loads the config; on problems reports them and returns NULL. In check mode
 * the report is plain lines, otherwise JSON log lines. */
static struct hd_config *load_config(const struct cli *cli, bool check)
{
    struct hd_strlist problems = {0}, warnings = {0};
    struct hd_config *cfg =
        hd_config_load(cli->config, environ, cli->listen, check ? HD_CONFIG_NO_SIDE_EFFECTS : 0,
                       &problems, &warnings);
    if (cfg && cfg->log.level)
        hd_log_set_level(cfg->log.level);
    for (size_t i = 0; i < problems.len; i++) {
        char key[128];
        problem_key(problems.items[i], key, sizeof(key));
        if (check)
            fprintf(stderr, "%s\n", problems.items[i]);
        else
            hd_log(HD_LOG_ERROR, problems.items[i], "key", key, NULL);
    }
    for (size_t i = 0; i < warnings.len; i++) {
        char key[128];
        problem_key(warnings.items[i], key, sizeof(key));
        if (check)
            fprintf(stderr, "warning: %s\n", warnings.items[i]);
        else
            hd_log(HD_LOG_WARN, warnings.items[i], "key", key, NULL);
    }
    hd_strlist_clear(&problems);
    hd_strlist_clear(&warnings);
    return cfg;
}

/* herald migrate [--status]: applies pending migrations, or lists them. */
static int migrate(const struct cli *cli)
{
    struct hd_config *cfg = load_config(cli, false);
    if (!cfg)
        return 2;
    enum hd_schema_result r =
        hd_store_schema(cfg, cli->status ? HD_SCHEMA_STATUS : HD_SCHEMA_APPLY, 10000);
    hd_config_free(cfg);
    return r == HD_SCHEMA_OK ? 0 : 1;
}

struct hash_thread {
    const struct hd_password_params *params;
    int rounds;
    int failed;
};

static void *hash_rounds(void *arg)
{
    struct hash_thread *t = arg;
    char out[256];
    for (int i = 0; i < t->rounds; i++)
        t->failed |= hd_password_hash("bench-password-123", 18, t->params, out) != 0;
    return NULL;
}

/* Hashes per second with every core hashing at once (memory bandwidth makes
 * this lower than cores / one hash's time). */
static double concurrent_hash_rate(const struct hd_password_params *p)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;
    pthread_t tid[64];
    struct hash_thread t[64];
    uint64_t t0 = hd_now_us();
    for (int i = 0; i < n; i++) {
        t[i] = (struct hash_thread){p, 4, 0};
        pthread_create(&tid[i], NULL, hash_rounds, &t[i]);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
        failed |= t[i].failed;
    }
    double s = (double)(hd_now_us() - t0) / 1e6;
    return failed ? 0 : (double)(n * 4) / s;
}

/* herald hash-cost: prints the median time of one password hash at the
 * configured Argon2id costs (ms), then the hashes per second with every core
 * hashing at once: the two views of this machine's login ceiling. */
static int hash_cost(const struct cli *cli)
{
    struct hd_config *cfg = load_config(cli, true);
    if (!cfg)
        return 2;
    struct hd_password_params p;
    hd_password_params_from_config(cfg, &p);
    double ms[5];
    char out[256];
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = hd_now_us();
        if (hd_password_hash("bench-password-123", 18, &p, out) != 0) {
            hd_config_free(cfg);
            return 1;
        }
        ms[i] = (double)(hd_now_us() - t0) / 1000.0;
    }
    for (int i = 1; i < 5; i++) /* insertion sort of five */
        for (int k = i; k > 0 && ms[k] < ms[k - 1]; k--) {
            double t = ms[k];
            ms[k] = ms[k - 1];
            ms[k - 1] = t;
        }
    double rate = concurrent_hash_rate(&p);
    printf("%.1f %.1f\n", ms[2], rate);
    hd_config_free(cfg);
    return rate > 0 ? 0 : 1;
}

static int check_config(const struct cli *cli)
{
    struct hd_config *cfg = load_config(cli, true);
    if (!cfg)
        return 2;
    printf("config ok\n");
    hd_config_free(cfg);
    return 0;
}

/* Waits for SIGTERM/SIGINT, drains within the grace period; a second signal
 * exits at once. Returns the exit code. */
static int wait_for_shutdown(struct hd_server *s, const struct hd_config *cfg, const sigset_t *set)
{
    int sig;
    do {
        sig = sigwaitinfo(set, NULL);
    } while (sig < 0 && errno == EINTR);
    hd_log(HD_LOG_INFO, "shutting down", "signal", strsignal(sig), NULL);
    hd_server_drain(s);
    uint64_t deadline = hd_now_ms() + (uint64_t)cfg->server.shutdown_grace_s * 1000u;
    while (!hd_server_wait_drained(s, 50)) {
        struct timespec poll = {0, 0};
        if (sigtimedwait(set, NULL, &poll) > 0) {
            hd_log(HD_LOG_WARN, "second signal: exiting at once", NULL);
            _exit(1);
        }
        if (hd_now_ms() >= deadline) {
            hd_log(HD_LOG_WARN, "grace period over: closing remaining connections", NULL);
            break;
        }
    }
    return 0;
}

static int serve(const struct cli *cli)
{
    /* Signals are taken by this thread with sigwaitinfo; every thread started
     * below inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct hd_config *cfg = load_config(cli, false);
    if (!cfg)
        return 2;
    int rc = 1;
    struct hd_echo *echo = NULL;
    struct hd_server *s = NULL;
    struct hd_store *store = NULL;
    struct hd_sessions *sessions = NULL;
    struct hd_auth *auth = NULL;
    struct hd_ratelimit *ratelimit = NULL;
    struct hd_broadcaster *broadcaster = NULL;
    struct hd_api api = {.cfg = cfg};
    enum hd_schema_result schema =
        hd_store_schema(cfg, cfg->store.auto_migrate ? HD_SCHEMA_APPLY : HD_SCHEMA_CHECK, 10000);
    if (schema != HD_SCHEMA_OK) {
        rc = schema == HD_SCHEMA_OUTDATED ? 2 : 1;
        goto out;
    }
    store = hd_store_start(cfg);
    sessions = store ? hd_sessions_start(cfg, store) : NULL;
    auth = hd_auth_start(cfg);
    if (sessions && !hd_sessions_wait_loaded(sessions, 10000))
        hd_log(HD_LOG_WARN, "sessions not loaded yet: serving, /readyz says so", NULL);
    echo = hd_echo_start();
    if (cfg->ratelimit.enabled) {
        struct hd_ratelimit_options rlo = {
            .max_keys = cfg->ratelimit.max_keys,
            .redis_url = cfg->redis.url,
            .redis_down = strcmp(cfg->ratelimit.redis_down, "allow") == 0  ? HD_RL_REDIS_DOWN_ALLOW
                          : strcmp(cfg->ratelimit.redis_down, "deny") == 0 ? HD_RL_REDIS_DOWN_DENY
                                                                           : HD_RL_REDIS_DOWN_LOCAL,
        };
        ratelimit = hd_ratelimit_start(&rlo);
    }
    hd_api_limits_init(&api.limits, cfg, ratelimit);
    broadcaster = store ? hd_broadcaster_start(cfg, store, &hd_api_sse_sink) : NULL;
    if (broadcaster && sessions)
        hd_broadcaster_follow_sessions(broadcaster, sessions);
    api.broadcaster = broadcaster;
    hd_api_sse_frames_init(&api);
    if (sessions && api.limits.on[HD_POLICY_REFRESH_SESSION])
        hd_sessions_limit_refresh(sessions, ratelimit, hd_policy_name(HD_POLICY_REFRESH_SESSION),
                                  &api.limits.rules[HD_POLICY_REFRESH_SESSION]);
    api.store = store;
    api.sessions = sessions;
    api.auth = auth;
    api.keys = hd_token_keys_new(cfg);
    s = hd_server_new(cfg);
    if (!store || !sessions || !auth || !echo || (cfg->ratelimit.enabled && !ratelimit) ||
        !broadcaster || hd_ops_routes(s) != 0 || hd_api_stream_routes(&api, s) != 0 ||
        hd_echo_routes(echo, s) != 0 || hd_store_routes(store, s) != 0 || !api.keys ||
        hd_api_auth_routes(&api, s) != 0 || hd_api_account_routes(&api, s) != 0 ||
        hd_api_admin_routes(&api, s) != 0 || hd_api_keys_routes(&api, s) != 0 ||
        hd_api_notification_routes(&api, s) != 0) {
        hd_log(HD_LOG_ERROR, "cannot set up routes and actors", NULL);
        goto out;
    }
    hd_broadcaster_attach(broadcaster, s);
    if (hd_server_start(s) != 0)
        goto out;
    rc = wait_for_shutdown(s, cfg, &set);
out:
    /* Producers before consumers: the I/O threads, then the actors they post
     * to; the session actor and the store post to each other, so the
     * session actor first stops asking, then the store stops, then it. */
    hd_broadcaster_detach(broadcaster); /* posts nothing to I/O threads from here */
    hd_server_free(s);
    hd_api_sse_frames_free(&api);
    hd_echo_stop(echo);
    hd_auth_stop(auth);
    hd_sessions_quiesce(sessions);
    hd_broadcaster_quiesce(broadcaster);
    hd_store_stop(store);
    hd_sessions_stop(sessions);
    hd_broadcaster_stop(broadcaster); /* the session actor posted to it */
    hd_ratelimit_stop(ratelimit);
    hd_api_routes_free(&api);
    hd_token_keys_free(api.keys);
    hd_log(HD_LOG_INFO, "stopped", NULL);
    hd_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    if (argc >= 2 && strcmp(argv[1], "admin") == 0) { /* its own flags: --email, --org… */
        if (sodium_init() < 0) {
            fprintf(stderr, "herald: libsodium failed to initialise\n");
            return 1;
        }
        cli.command = "admin";
        cli.config = hd_admin_cli_config_path(argc, argv);
        struct hd_config *cfg = load_config(&cli, true);
        if (!cfg)
            return 2;
        int rc = hd_admin_cli(argc, argv, cfg);
        hd_config_free(cfg);
        return rc;
    }
    if (parse_cli(argc, argv, &cli) != 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(cli.command, "version") == 0 || strcmp(cli.command, "--version") == 0) {
        printf("herald %s\n", HERALD_VERSION);
        return 0;
    }
    if (strcmp(cli.command, "help") == 0 || strcmp(cli.command, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "herald: libsodium failed to initialise\n");
        return 1;
    }
    if (strcmp(cli.command, "serve") == 0)
        return serve(&cli);
    if (strcmp(cli.command, "check-config") == 0)
        return check_config(&cli);
    if (strcmp(cli.command, "migrate") == 0)
        return migrate(&cli);
    if (strcmp(cli.command, "hash-cost") == 0)
        return hash_cost(&cli);
    usage(stderr);
    return 2;
}
