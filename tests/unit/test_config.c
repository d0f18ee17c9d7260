/* Tests for src/core/config.c and src/core/config_check.c. Criterion runs
 * each test in its own process, so chdir and files under the per-test
 * temporary directory cannot leak between tests. */
#include <criterion/criterion.h>

#include "herald/config.h"
#include "core/config_internal.h"
#include "core/embedded.h"

#include <ctype.h>
#include <ftw.h>
#include <stddef.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOOD_SECRET "k3Jd9sLq0Zx8Vb7Nm6Pq5Rt4Wy3Ue2Io1Ap0Sd9Fg8"
#define ENV_SECRET  "HERALD_JWT_SECRET=" GOOD_SECRET

static char tmp[64]; /* "/tmp/herald-config-XXXXXX" */
static struct hd_strlist problems, warnings;

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    snprintf(tmp, sizeof(tmp), "/tmp/herald-config-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    hd_strlist_clear(&problems);
    hd_strlist_clear(&warnings);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes @json to a file in the test's directory and returns its path. */
static const char *write_json(const char *json)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/herald.json", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
    return path;
}

static struct hd_config *load(const char *json, char *const *env, const char *listen, int flags)
{
    return hd_config_load(json ? write_json(json) : NULL, env, listen, flags, &problems, &warnings);
}

/* The problems, one per line, for assertion messages. */
static const char *all(const struct hd_strlist *l)
{
    static char buf[4096];
    buf[0] = '\0';
    for (size_t i = 0; i < l->len; i++) {
        strncat(buf, l->items[i], sizeof(buf) - strlen(buf) - 2);
        strcat(buf, "\n");
    }
    return buf;
}

/* True when some line starts with @prefix and contains @needle (or NULL). */
static bool has_line(const struct hd_strlist *l, const char *prefix, const char *needle)
{
    for (size_t i = 0; i < l->len; i++) {
        if (strncmp(l->items[i], prefix, strlen(prefix)) == 0 &&
            (!needle || strstr(l->items[i], needle)))
            return true;
    }
    return false;
}

static struct hd_config *assert_loads_ok(const char *json, char *const *env, const char *listen)
{
    struct hd_config *cfg = load(json, env, listen, 0);
    cr_assert_not_null(cfg, "unexpected problems:\n%s", all(&problems));
    cr_assert_eq(problems.len, 0);
    return cfg;
}

static void expect_problem(const char *json, char *const *env, const char *prefix,
                           const char *needle)
{
    struct hd_config *cfg = load(json, env, NULL, 0);
    cr_assert_null(cfg, "expected a problem starting with %s", prefix);
    cr_assert(has_line(&problems, prefix, needle), "no \"%s...%s\" in:\n%s", prefix,
              needle ? needle : "", all(&problems));
}

static const char *source_file(const char *rel, char *buf, size_t cap)
{
    const char *root = getenv("HERALD_SOURCE_DIR");
    const char *tries[] = {root, ".", "..", "../.."};
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        if (!tries[i])
            continue;
        snprintf(buf, cap, "%s/%s", tries[i], rel);
        char resolved[PATH_MAX];
        if (realpath(buf, resolved)) { /* absolute: tests may chdir */
            snprintf(buf, cap, "%s", resolved);
            return buf;
        }
    }
    cr_assert_fail("cannot find %s; set HERALD_SOURCE_DIR", rel);
    return NULL;
}

/* ---- defaults and precedence ------------------------------------------- */

Test(config, defaults_match_the_header)
{
    char *env[] = {ENV_SECRET, NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_expect_eq(cfg->dev_mode, false);
    cr_expect_str_eq(cfg->server.listen_host, "127.0.0.1");
    cr_expect_eq(cfg->server.listen_port, 8080);
    cr_expect_eq(cfg->server.io_threads, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    cr_expect_eq(cfg->server.max_connections, 10000);
    cr_expect_eq(cfg->server.backlog, 1024);
    cr_expect_eq(cfg->server.max_header_bytes, 8192);
    cr_expect_eq(cfg->server.max_body_bytes, 1 << 20);
    cr_expect_eq(cfg->server.header_timeout_ms, 10000);
    cr_expect_eq(cfg->server.body_timeout_ms, 30000);
    cr_expect_eq(cfg->server.idle_timeout_s, 60);
    cr_expect_eq(cfg->server.shutdown_grace_s, 10);
    cr_expect_eq(cfg->server.n_trusted_proxies, 0);
    cr_expect_str_eq(cfg->jwt.secret, GOOD_SECRET);
    cr_expect_str_eq(cfg->jwt.secret_file, "");
    cr_expect_str_eq(cfg->jwt.algorithm, "HS256");
    cr_expect_str_eq(cfg->jwt.issuer, "herald");
    cr_expect_str_eq(cfg->jwt.audience, "herald");
    cr_expect_eq(cfg->jwt.access_ttl_s, 900);
    cr_expect_eq(cfg->jwt.leeway_s, 30);
    cr_expect_eq(cfg->cors.n_allowed_origins, 0);
    cr_expect_eq(cfg->cors.allow_credentials, false);
    cr_expect_eq(cfg->cors.max_age_s, 600);
    cr_expect_eq(cfg->cookie.secure, true);
    cr_expect_str_eq(cfg->cookie.same_site, "Lax");
    cr_expect_str_eq(cfg->log.level, "info");
    cr_expect_eq(cfg->log.access, true);
    cr_expect_str_eq(cfg->store.database_url, "");
    cr_expect_str_eq(cfg->redis.url, "");
    cr_expect_eq(warnings.len, 0, "%s", all(&warnings));
    hd_config_free(cfg);
}

Test(config, file_overrides_defaults)
{
    char *env[] = {ENV_SECRET, NULL};
    struct hd_config *cfg =
        assert_loads_ok("{\"server\": {\"listen\": \"localhost:0\", \"io_threads\": 3,"
                        " \"max_body_bytes\": 4096,"
                        " \"trusted_proxies\": [\"10.0.0.0/8\", \"::1\"]},"
                        " \"cors\": {\"allowed_origins\": [\"https://a.example\"]},"
                        " \"cookie\": {\"same_site\": \"strict\"},"
                        " \"log\": {\"level\": \"WARN\", \"access\": false},"
                        " \"store\": {\"database_url\": \"sqlite:var/h.db\"}}",
                        env, NULL);
    cr_expect_str_eq(cfg->server.listen_host, "localhost");
    cr_expect_eq(cfg->server.listen_port, 0);
    cr_expect_eq(cfg->server.io_threads, 3);
    cr_expect_eq(cfg->server.max_body_bytes, 4096);
    cr_assert_eq(cfg->server.n_trusted_proxies, 2);
    cr_expect_str_eq(cfg->server.trusted_proxies[1], "::1");
    cr_assert_eq(cfg->cors.n_allowed_origins, 1);
    cr_expect_str_eq(cfg->cors.allowed_origins[0], "https://a.example");
    cr_expect_str_eq(cfg->cookie.same_site, "Strict", "choices are stored as documented");
    cr_expect_str_eq(cfg->log.level, "warn");
    cr_expect_eq(cfg->log.access, false);
    cr_expect_str_eq(cfg->store.database_url, "sqlite:var/h.db");
    hd_config_free(cfg);
}

Test(config, long_env_names_override_the_file)
{
    char *env[] = {ENV_SECRET,
                   "HERALD_SERVER_MAX_CONNECTIONS=77",
                   "HERALD_LOG_ACCESS=off",
                   "HERALD_CORS_ALLOWED_ORIGINS= https://a.example ,,https://b.example:8443",
                   "HERALD_SERVER_LISTEN=[::1]:9000",
                   NULL};
    struct hd_config *cfg = assert_loads_ok("{\"server\": {\"max_connections\": 5}}", env, NULL);
    cr_expect_eq(cfg->server.max_connections, 77);
    cr_expect_eq(cfg->log.access, false);
    cr_assert_eq(cfg->cors.n_allowed_origins, 2);
    cr_expect_str_eq(cfg->cors.allowed_origins[0], "https://a.example");
    cr_expect_str_eq(cfg->cors.allowed_origins[1], "https://b.example:8443");
    cr_expect_str_eq(cfg->server.listen_host, "::1");
    cr_expect_eq(cfg->server.listen_port, 9000);
    hd_config_free(cfg);
}

Test(config, short_env_names_beat_long_ones)
{
    char *env[] = {"HERALD_LISTEN=127.0.0.1:2222",
                   "HERALD_SERVER_LISTEN=127.0.0.1:1111",
                   "HERALD_STORE_DATABASE_URL=sqlite:long.db",
                   "HERALD_DATABASE_URL=postgres://db/herald",
                   ENV_SECRET,
                   NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    cr_expect_eq(cfg->server.listen_port, 2222);
    cr_expect_str_eq(cfg->store.database_url, "postgres://db/herald");
    hd_config_free(cfg);
}

Test(config, listen_argument_beats_file_and_env)
{
    char *env[] = {ENV_SECRET, "HERALD_SERVER_LISTEN=127.0.0.1:1111",
                   "HERALD_LISTEN=127.0.0.1:2222", NULL};
    struct hd_config *cfg =
        assert_loads_ok("{\"server\": {\"listen\": \"127.0.0.1:3333\"}}", env, "127.0.0.2:0");
    cr_expect_str_eq(cfg->server.listen_host, "127.0.0.2");
    cr_expect_eq(cfg->server.listen_port, 0);
    hd_config_free(cfg);
}

Test(config, a_missing_file_is_a_problem)
{
    char *env[] = {ENV_SECRET, NULL};
    struct hd_config *cfg =
        hd_config_load("/nonexistent/herald.json", env, NULL, 0, &problems, &warnings);
    cr_assert_null(cfg);
    cr_expect(has_line(&problems, "config: ", "/nonexistent/herald.json"), "%s", all(&problems));
}

Test(config, invalid_json_is_a_problem_that_does_not_quote_the_text)
{
    char *env[] = {NULL};
    expect_problem("{\"jwt\": {\"secret\": \"" GOOD_SECRET "\" \"x\"}}", env, "config: ", ":1:");
    cr_expect_null(strstr(all(&problems), GOOD_SECRET), "%s", all(&problems));
}

Test(config, top_level_must_be_an_object)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("[1, 2]", env, "config: ", "JSON object");
}

Test(config, duplicate_keys_are_a_problem)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"dev_mode\": true, \"dev_mode\": false}", env, "config: ", "duplicate");
}

/* ---- unknown keys, types, ranges, env values --------------------------- */

Test(config, unknown_top_level_key)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"bogus\": 1, \"listen\": \"x\"}", env, "bogus: unknown key", NULL);
    cr_expect(has_line(&problems, "listen: unknown key", NULL), "%s", all(&problems));
    cr_expect_eq(problems.len, 2, "one problem per unknown key:\n%s", all(&problems));
}

Test(config, unknown_nested_key_names_its_full_path)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"server\": {\"max_conections\": 5}}", env,
                   "server.max_conections: unknown key", "did you mean server.max_connections?");
    cr_expect_eq(problems.len, 1);
}

Test(config, a_section_must_be_an_object)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"server\": 5}", env, "server: expected an object", NULL);
}

Test(config, wrong_types_name_the_key)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"server\": {\"io_threads\": \"four\"}, \"dev_mode\": 1,"
                   " \"cors\": {\"allowed_origins\": [\"https://a.example\", 7]},"
                   " \"log\": {\"level\": 3}}",
                   env, "server.io_threads: expected an integer, got a string", NULL);
    cr_expect(has_line(&problems, "dev_mode: expected true or false", NULL), "%s", all(&problems));
    cr_expect(has_line(&problems, "cors.allowed_origins[1]: expected a string", NULL), "%s",
              all(&problems));
    cr_expect(has_line(&problems, "log.level: expected a string", NULL), "%s", all(&problems));
    cr_expect_eq(problems.len, 4, "%s", all(&problems));
}

Test(config, out_of_range_and_bad_choices_name_the_key)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem(
        "{\"server\": {\"backlog\": 0, \"max_header_bytes\": -1},"
        " \"cookie\": {\"same_site\": \"Sometimes\"}, \"jwt\": {\"algorithm\": \"none\"}}",
        env, "server.backlog: 0 is out of range", NULL);
    cr_expect(has_line(&problems, "server.max_header_bytes: -1 is out of range", NULL), "%s",
              all(&problems));
    cr_expect(has_line(&problems, "cookie.same_site: must be one of Strict, Lax, None", NULL), "%s",
              all(&problems));
    cr_expect(has_line(&problems, "jwt.algorithm: must be one of", NULL), "%s", all(&problems));
}

Test(config, bad_env_value_names_the_variable_and_the_key)
{
    char *env[] = {ENV_SECRET, "HERALD_SERVER_IO_THREADS=abc", "HERALD_DEV_MODE=maybe",
                   "HERALD_SERVER_BACKLOG=99999999999999999999", NULL};
    expect_problem(NULL, env, "server.io_threads: HERALD_SERVER_IO_THREADS: ", "integer");
    cr_expect(has_line(&problems, "dev_mode: HERALD_DEV_MODE: ", NULL), "%s", all(&problems));
    cr_expect(has_line(&problems, "server.backlog: HERALD_SERVER_BACKLOG: ", NULL), "%s",
              all(&problems));
}

Test(config, bad_listen_values_are_refused)
{
    const char *bad[] = {"8080",     ":8080",   "127.0.0.1:",   "127.0.0.1:65536", "::1:80",
                         "[::g]:80", "[::1]80", "999.1.1.1:80", "ho st:80",        "host:8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *env[] = {ENV_SECRET, NULL};
        struct hd_config *cfg = load(NULL, env, bad[i], 0);
        cr_expect_null(cfg, "--listen %s was accepted", bad[i]);
        cr_expect(has_line(&problems, "server.listen: --listen: ", NULL), "%s: %s", bad[i],
                  all(&problems));
        hd_config_free(cfg);
        hd_strlist_clear(&problems);
    }
}

Test(config, database_and_redis_urls_are_checked)
{
    char *env[] = {ENV_SECRET, "HERALD_DATABASE_URL=mysql://u:hunter2@db/x",
                   "HERALD_REDIS_URL=http://cache", NULL};
    expect_problem(NULL, env, "store.database_url: HERALD_DATABASE_URL: ", "postgres://");
    cr_expect(has_line(&problems, "redis.url: HERALD_REDIS_URL: ", "redis://"), "%s",
              all(&problems));
    cr_expect_null(strstr(all(&problems), "hunter2"), "a URL's password leaked");
}

Test(config, origins_must_be_scheme_host_port)
{
    const char *bad[] = {
        "https://a.example/",  "https://a.example/app", "a.example",           "https://A.example",
        "https://a.example:0", "https://a.example:443", "http://a.example:80", "https://",
        "*.example.com",       "https://a.example?x=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json), "{\"cors\": {\"allowed_origins\": [\"%s\"]}}", bad[i]);
        char *env[] = {ENV_SECRET, NULL};
        struct hd_config *cfg = load(json, env, NULL, 0);
        cr_expect_null(cfg, "origin %s was accepted", bad[i]);
        cr_expect(has_line(&problems, "cors.allowed_origins[0]: ", NULL), "%s", all(&problems));
        hd_config_free(cfg);
        hd_strlist_clear(&problems);
    }
}

Test(config, origin_allowed_matches_exactly)
{
    char *env[] = {ENV_SECRET,
                   "HERALD_CORS_ALLOWED_ORIGINS=http://localhost:3000,https://[::1]:8443", NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    const char *o = "http://localhost:3000";
    cr_expect(hd_config_origin_allowed(cfg, o, strlen(o)));
    cr_expect(hd_config_origin_allowed(cfg, "https://[::1]:8443", 18));
    cr_expect_not(hd_config_origin_allowed(cfg, o, strlen(o) - 1), "a prefix must not match");
    cr_expect_not(hd_config_origin_allowed(cfg, "http://localhost:30000", 22));
    cr_expect_not(hd_config_origin_allowed(cfg, "HTTP://localhost:3000", 21));
    cr_expect_not(hd_config_origin_allowed(cfg, "http://localhost:3000\0x", 23));
    cr_expect_not(hd_config_origin_allowed(cfg, NULL, 0));
    hd_config_free(cfg);
}

Test(config, origin_allowed_with_star_allows_any)
{
    char *env[] = {ENV_SECRET, "HERALD_CORS_ALLOWED_ORIGINS=*", NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    cr_expect(hd_config_origin_allowed(cfg, "https://anything.example", 24));
    hd_config_free(cfg);
}

/* ---- safety checks ------------------------------------------------------ */

Test(config, missing_secret_is_refused)
{
    char *env[] = {NULL};
    expect_problem(NULL, env, "jwt.secret: missing (set HERALD_JWT_SECRET or jwt.secret_file)",
                   NULL);
}

Test(config, short_secret_is_refused)
{
    char *env[] = {"HERALD_JWT_SECRET=0123456789abcdef0123456789abcde", NULL}; /* 31 bytes */
    expect_problem(NULL, env, "jwt.secret: shorter than 32 bytes", NULL);
}

Test(config, secret_of_exactly_32_bytes_is_accepted)
{
    char *env[] = {"HERALD_JWT_SECRET=0123456789abcdef0123456789abcdef", NULL};
    hd_config_free(assert_loads_ok(NULL, env, NULL));
}

/* Every string of the embedded example config is refused as a secret. */
static void walk_example_strings(json_t *j, size_t *checked)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_string(j) && json_string_length(j) > 0) {
        char var[512];
        snprintf(var, sizeof(var), "HERALD_JWT_SECRET=%s", json_string_value(j));
        char *env[] = {var, NULL};
        struct hd_config *cfg = load(NULL, env, NULL, 0);
        cr_expect_null(cfg, "example value %s accepted as secret", json_string_value(j));
        cr_expect(has_line(&problems, "jwt.secret: ", NULL));
        hd_config_free(cfg);
        hd_strlist_clear(&problems);
        ++*checked;
    }
    json_object_foreach(j, key, v) walk_example_strings(v, checked);
    json_array_foreach(j, i, v) walk_example_strings(v, checked);
}

Test(config, example_config_values_are_refused_as_secret)
{
    const struct hd_embedded_file *f = hd_embedded_find("configs/herald.example.json");
    cr_assert_not_null(f);
    json_t *root = json_loadb(f->data, f->len, 0, NULL);
    cr_assert_not_null(root);
    const char *placeholder =
        json_string_value(json_object_get(json_object_get(root, "jwt"), "secret"));
    cr_assert_not_null(placeholder);
    cr_assert_geq(strlen(placeholder), 32, "the placeholder must fail for being an example");

    char var[256];
    snprintf(var, sizeof(var), "HERALD_JWT_SECRET=%s", placeholder);
    char *env[] = {var, NULL};
    expect_problem(NULL, env, "jwt.secret: ", "example config");
    hd_strlist_clear(&problems);

    size_t checked = 0;
    walk_example_strings(root, &checked);
    cr_expect_gt(checked, 5);
    json_decref(root);
}

Test(config, well_known_secrets_are_refused_ignoring_case)
{
    const char *known[] = {"secret",          "ChangeMe",    "your-256-bit-secret",
                           "YOUR-SECRET-KEY", "supersecret", "changeme-changeme-changeme-changeme"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        char var[128];
        snprintf(var, sizeof(var), "HERALD_JWT_SECRET=%s", known[i]);
        char *env[] = {var, NULL};
        expect_problem(NULL, env, "jwt.secret: ", "well-known");
        hd_strlist_clear(&problems);
    }
}

Test(config, cors_star_with_credentials_is_refused)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"cors\": {\"allowed_origins\": [\"*\"], \"allow_credentials\": true}}", env,
                   "cors.allowed_origins: ", "allow_credentials");
}

Test(config, cors_star_without_credentials_is_accepted)
{
    char *env[] = {ENV_SECRET, NULL};
    hd_config_free(assert_loads_ok("{\"cors\": {\"allowed_origins\": [\"*\"]}}", env, NULL));
}

Test(config, insecure_cookie_outside_dev_mode_is_refused)
{
    char *env[] = {ENV_SECRET, "HERALD_COOKIE_SECURE=false", NULL};
    expect_problem(NULL, env, "cookie.secure: ", "dev_mode");
}

Test(config, insecure_cookie_in_dev_mode_is_accepted)
{
    char *env[] = {ENV_SECRET, "HERALD_COOKIE_SECURE=false", "HERALD_DEV_MODE=true", NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    cr_expect_eq(cfg->cookie.secure, false);
    cr_expect(has_line(&warnings, "dev_mode: ", NULL), "%s", all(&warnings));
    hd_config_free(cfg);
}

Test(config, same_site_none_without_secure_is_refused)
{
    char *env[] = {ENV_SECRET, NULL};
    expect_problem("{\"dev_mode\": true, \"cookie\": {\"secure\": false, \"same_site\": \"None\"}}",
                   env, "cookie.same_site: ", "cookie.secure");
    cr_expect_eq(problems.len, 1, "%s", all(&problems));
}

Test(config, same_site_none_with_secure_is_accepted)
{
    char *env[] = {ENV_SECRET, "HERALD_COOKIE_SAME_SITE=None", NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    cr_expect_str_eq(cfg->cookie.same_site, "None");
    hd_config_free(cfg);
}

Test(config, no_problem_or_warning_quotes_the_secret)
{
    const char *secrets[] = {"hunter2-but-short", "your-256-bit-secret",
                             "REPLACE-ME-with-at-least-32-random-bytes-from-a-secret-store"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        char var[128];
        snprintf(var, sizeof(var), "HERALD_JWT_SECRET=%s", secrets[i]);
        char *env[] = {var, "HERALD_JWT_SECRET_FILE=/x", "HERALD_SERVER_LISTEN=0.0.0.0:1", NULL};
        struct hd_config *cfg = load(NULL, env, NULL, 0);
        cr_expect_null(cfg);
        cr_expect_gt(problems.len, 0);
        cr_expect_gt(warnings.len, 0);
        cr_expect_null(strstr(all(&problems), secrets[i]), "%s", all(&problems));
        cr_expect_null(strstr(all(&warnings), secrets[i]), "%s", all(&warnings));
        hd_strlist_clear(&problems);
        hd_strlist_clear(&warnings);
    }
}

/* ---- jwt.secret_file ---------------------------------------------------- */

static char *read_whole(const char *path)
{
    static char buf[512];
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s missing", path);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

Test(config, dev_secret_is_generated_0600_and_reused)
{
    char json[512], file[256], dir[128];
    snprintf(dir, sizeof(dir), "%s/var/deeper", tmp);
    snprintf(file, sizeof(file), "%s/jwt.secret", dir);
    snprintf(json, sizeof(json), "{\"dev_mode\": true, \"jwt\": {\"secret_file\": \"%s\"}}", file);
    char *env[] = {NULL};

    struct hd_config *cfg = assert_loads_ok(json, env, NULL);
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(stat(dir, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    cr_expect_eq(strlen(cfg->jwt.secret), 64, "48 bytes, base64url without padding");
    cr_expect_eq(strspn(cfg->jwt.secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-_"),
                 64);
    char first[128];
    snprintf(first, sizeof(first), "%s", cfg->jwt.secret);
    cr_expect_str_eq(read_whole(file), strcat(strcpy((char[130]){0}, first), "\n"));
    hd_config_free(cfg);

    cfg = assert_loads_ok(json, env, NULL);
    cr_expect_str_eq(cfg->jwt.secret, first, "the second load reuses the file");
    hd_config_free(cfg);
}

Test(config, no_side_effects_creates_nothing)
{
    char json[512], dir[128];
    snprintf(dir, sizeof(dir), "%s/var", tmp);
    snprintf(json, sizeof(json),
             "{\"dev_mode\": true, \"jwt\": {\"secret_file\": \"%s/jwt.secret\"}}", dir);
    char *env[] = {NULL};
    struct hd_config *cfg = load(json, env, NULL, HD_CONFIG_NO_SIDE_EFFECTS);
    cr_assert_not_null(cfg, "%s", all(&problems));
    cr_expect_str_eq(cfg->jwt.secret, "");
    cr_expect_neq(access(dir, F_OK), 0, "NO_SIDE_EFFECTS created %s", dir);
    hd_config_free(cfg);
}

Test(config, missing_secret_file_outside_dev_mode_is_refused)
{
    char *env[] = {"HERALD_JWT_SECRET_FILE=/nonexistent/jwt.secret", NULL};
    expect_problem(NULL, env, "jwt.secret_file: ", "does not exist");
    cr_expect_eq(problems.len, 1, "%s", all(&problems));
}

Test(config, unreadable_secret_file_is_one_problem)
{
    char var[256];
    snprintf(var, sizeof(var), "HERALD_JWT_SECRET_FILE=%s", tmp); /* a directory */
    char *env[] = {var, "HERALD_DEV_MODE=true", NULL};
    expect_problem(NULL, env, "jwt.secret_file: ", "not a regular file");
    cr_expect_eq(problems.len, 1, "%s", all(&problems));
}

Test(config, secret_file_is_read_and_its_newline_trimmed)
{
    char file[128], var[256];
    snprintf(file, sizeof(file), "%s/secret", tmp);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(GOOD_SECRET "\r\n", f);
    fclose(f);
    chmod(file, 0640);
    snprintf(var, sizeof(var), "HERALD_JWT_SECRET_FILE=%s", file);
    char *env[] = {var, NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, NULL);
    cr_expect_str_eq(cfg->jwt.secret, GOOD_SECRET);
    cr_expect(has_line(&warnings, "jwt.secret_file: ", "chmod 600"), "%s", all(&warnings));
    hd_config_free(cfg);
}

Test(config, short_secret_from_file_is_refused_without_quoting_it)
{
    char file[128], var[256];
    snprintf(file, sizeof(file), "%s/secret", tmp);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("tiny-secret\n", f);
    fclose(f);
    snprintf(var, sizeof(var), "HERALD_JWT_SECRET_FILE=%s", file);
    char *env[] = {var, NULL};
    expect_problem(NULL, env, "jwt.secret: shorter than 32 bytes", "jwt.secret_file");
    cr_expect_null(strstr(all(&problems), "tiny-secret"));
}

/* ---- warnings ----------------------------------------------------------- */

Test(config, binding_every_interface_warns)
{
    char *env[] = {ENV_SECRET, NULL};
    struct hd_config *cfg = assert_loads_ok(NULL, env, "0.0.0.0:8080");
    cr_expect(has_line(&warnings,
                       "server.listen: binding 0.0.0.0 exposes herald on every interface", NULL),
              "%s", all(&warnings));
    hd_config_free(cfg);
    hd_strlist_clear(&warnings);

    cfg = assert_loads_ok(NULL, env, "[::]:8080");
    cr_expect(has_line(&warnings, "server.listen: binding [::]", NULL), "%s", all(&warnings));
    cr_expect_str_eq(cfg->server.listen_host, "::");
    hd_config_free(cfg);
}

/* ---- the shipped config files ------------------------------------------ */

Test(config, dev_config_loads_without_problems)
{
    char path[PATH_MAX + 64];
    source_file("configs/herald.dev.json", path, sizeof(path));
    cr_assert_eq(chdir(tmp), 0); /* its secret_file is relative: var/jwt.secret */
    char *env[] = {NULL};

    struct hd_config *cfg =
        hd_config_load(path, env, NULL, HD_CONFIG_NO_SIDE_EFFECTS, &problems, &warnings);
    cr_assert_not_null(cfg, "%s", all(&problems));
    cr_expect_neq(access("var", F_OK), 0);
    hd_config_free(cfg);

    cfg = hd_config_load(path, env, NULL, 0, &problems, &warnings);
    cr_assert_not_null(cfg, "%s", all(&problems));
    cr_expect_eq(problems.len, 0);
    cr_expect(cfg->dev_mode);
    cr_expect_str_eq(cfg->server.listen_host, "127.0.0.1");
    cr_expect_eq(cfg->server.listen_port, 8080);
    cr_expect_eq(cfg->cookie.secure, false);
    cr_expect(cfg->cors.allow_credentials);
    cr_expect(hd_config_origin_allowed(cfg, "http://localhost:3000", 21));
    cr_expect(hd_config_origin_allowed(cfg, "http://127.0.0.1:3000", 21));
    cr_expect_eq(strlen(cfg->jwt.secret), 64);
    cr_expect_eq(access("var/jwt.secret", R_OK), 0);
    hd_config_free(cfg);
}

Test(config, example_config_is_refused_only_for_its_secret)
{
    char path[PATH_MAX + 64];
    source_file("configs/herald.example.json", path, sizeof(path));
    char *env[] = {NULL};
    struct hd_config *cfg = hd_config_load(path, env, NULL, 0, &problems, &warnings);
    cr_assert_null(cfg);
    cr_expect_eq(problems.len, 1, "%s", all(&problems));
    cr_expect(has_line(&problems, "jwt.secret: ", "example config"), "%s", all(&problems));

    char *fixed[] = {ENV_SECRET, NULL};
    hd_strlist_clear(&problems);
    cfg = hd_config_load(path, fixed, NULL, 0, &problems, &warnings);
    cr_assert_not_null(cfg, "%s", all(&problems));
    cr_expect_eq(cfg->cookie.secure, true);
    hd_config_free(cfg);
}

Test(config, example_config_on_disk_matches_the_embedded_copy)
{
    char path[PATH_MAX + 64];
    source_file("configs/herald.example.json", path, sizeof(path));
    const struct hd_embedded_file *f = hd_embedded_find("configs/herald.example.json");
    cr_assert_not_null(f);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    cr_expect_eq(n, f->len);
    cr_expect_eq(memcmp(buf, f->data, n < f->len ? n : f->len), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

Test(config, every_key_is_in_the_example_config_and_the_docs)
{
    char path[PATH_MAX + 64];
    const struct hd_embedded_file *f = hd_embedded_find("configs/herald.example.json");
    cr_assert_not_null(f);
    json_t *root = json_loadb(f->data, f->len, 0, NULL);
    cr_assert_not_null(root);
    const char *docs = slurp(source_file("docs/configuration.md", path, sizeof(path)));
    size_t i = 0;
    for (const char *key; (key = hd__config_key_path(i)); i++) {
        char section[64], ticked[80], env[96];
        const char *dot = strchr(key, '.');
        json_t *v = root;
        if (dot) {
            snprintf(section, sizeof(section), "%.*s", (int)(dot - key), key);
            v = json_object_get(root, section);
        }
        cr_expect_not_null(json_object_get(v, dot ? dot + 1 : key), "%s not in the example", key);
        snprintf(ticked, sizeof(ticked), "| `%s` |", key);
        cr_expect_not_null(strstr(docs, ticked), "%s not in docs/configuration.md", key);
        snprintf(env, sizeof(env), "HERALD_%s", key);
        for (char *p = env; *p; p++)
            *p = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
        cr_expect_not_null(strstr(docs, env), "%s not in docs/configuration.md", env);
    }
    cr_expect_gt(i, 20);
    json_decref(root);
}

Test(config, example_config_holds_the_defaults)
{
    char path[PATH_MAX + 64];
    source_file("configs/herald.example.json", path, sizeof(path));
    char *env[] = {ENV_SECRET, NULL};
    struct hd_config *def = hd_config_load(NULL, env, NULL, 0, &problems, &warnings);
    cr_assert_not_null(def, "%s", all(&problems));
    /* The example's secret loses to the environment, so the two must match. */
    struct hd_config *ex = hd_config_load(path, env, NULL, 0, &problems, &warnings);
    cr_assert_not_null(ex, "%s", all(&problems));
    cr_expect_eq(memcmp(&def->server.listen_port, &ex->server.listen_port,
                        offsetof(struct hd_config, server.trusted_proxies) -
                            offsetof(struct hd_config, server.listen_port)),
                 0, "server numbers differ");
    cr_expect_str_eq(def->server.listen_host, ex->server.listen_host);
    cr_expect_eq(ex->server.n_trusted_proxies, 0);
    cr_expect_eq(def->dev_mode, ex->dev_mode);
    cr_expect_str_eq(def->jwt.secret_file, ex->jwt.secret_file);
    cr_expect_str_eq(def->jwt.algorithm, ex->jwt.algorithm);
    cr_expect_str_eq(def->jwt.issuer, ex->jwt.issuer);
    cr_expect_str_eq(def->jwt.audience, ex->jwt.audience);
    cr_expect_eq(def->jwt.access_ttl_s, ex->jwt.access_ttl_s);
    cr_expect_eq(def->jwt.leeway_s, ex->jwt.leeway_s);
    cr_expect_eq(ex->cors.n_allowed_origins, 0);
    cr_expect_eq(def->cors.allow_credentials, ex->cors.allow_credentials);
    cr_expect_eq(def->cors.max_age_s, ex->cors.max_age_s);
    cr_expect_eq(def->cookie.secure, ex->cookie.secure);
    cr_expect_str_eq(def->cookie.same_site, ex->cookie.same_site);
    cr_expect_str_eq(def->log.level, ex->log.level);
    cr_expect_eq(def->log.access, ex->log.access);
    cr_expect_str_eq(def->store.database_url, ex->store.database_url);
    cr_expect_str_eq(def->redis.url, ex->redis.url);
    hd_config_free(def);
    hd_config_free(ex);
}

/* ---- string lists ------------------------------------------------------- */

Test(config, strlist_adds_formatted_lines_and_clears)
{
    struct hd_strlist l = {0};
    for (int i = 0; i < 20; i++)
        hd_strlist_addf(&l, "line %d: %s", i, "x");
    cr_assert_eq(l.len, 20);
    cr_expect_str_eq(l.items[0], "line 0: x");
    cr_expect_str_eq(l.items[19], "line 19: x");
    hd_strlist_clear(&l);
    cr_expect_eq(l.len, 0);
    cr_expect_null(l.items);
    hd_strlist_clear(&l); /* twice is fine */
    cr_expect_eq(l.cap, 0);
}
