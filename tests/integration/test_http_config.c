/* Configuration refusal: `herald check-config` and `herald serve` exit 2
 * with a line naming the key, never start listening, never print a secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define RUN_TIMEOUT_MS 15000

struct run {
    char dir[512];
    char path[600];
    int code;
    char *output;
};

/* Writes the base config merged with @overrides into a fresh dir and runs
 * `herald @command --config FILE` (plus --listen for serve). */
static void run_with(struct run *run, const char *command, const char *overrides)
{
    hd_test_make_dir(run->dir, sizeof run->dir);
    snprintf(run->path, sizeof run->path, "%s/herald.json", run->dir);
    json_t *cfg = hd_test_config(overrides);
    hd_test_write_json(run->path, cfg);
    json_decref(cfg);
    const char *args[] = {command, "--config", run->path, "--listen", "127.0.0.1:0", NULL};
    if (strcmp(command, "serve") != 0)
        args[3] = NULL;
    run->code = hd_test_run_herald(args, run->dir, RUN_TIMEOUT_MS, &run->output);
}

static void run_free(struct run *run)
{
    free(run->output);
    hd_test_remove_dir(run->dir);
}

/* check-config and serve both refuse @overrides, naming @key, never
 * printing @secret (when not NULL). */
static void expect_refused(const char *overrides, const char *key, const char *secret)
{
    static const char *const commands[] = {"check-config", "serve"};
    for (size_t i = 0; i < 2; i++) {
        struct run run;
        run_with(&run, commands[i], overrides);
        cr_assert_eq(run.code, 2, "%s exited %d, want 2, for %s; output:\n%s", commands[i],
                     run.code, overrides, run.output);
        cr_assert(strstr(run.output, key), "%s output does not name %s:\n%s", commands[i], key,
                  run.output);
        cr_assert(!strstr(run.output, "\"listening\""), "%s started listening:\n%s", commands[i],
                  run.output);
        cr_assert(!strstr(run.output, hd_test_secret()), "the jwt secret was printed");
        cr_assert(!secret || !strstr(run.output, secret), "the secret %s was printed", secret);
        run_free(&run);
    }
}

Test(http_config, good_config_passes_check, .timeout = 60)
{
    struct run run;
    run_with(&run, "check-config", NULL);
    cr_assert_eq(run.code, 0, "check-config exited %d for the base config:\n%s", run.code,
                 run.output);
    cr_assert(!strstr(run.output, hd_test_secret()), "the jwt secret was printed");
    run_free(&run);
}

Test(http_config, short_jwt_secret_is_refused, .timeout = 60)
{
    expect_refused("{\"jwt\":{\"secret\":\"short-Secret-Value-123\"}}", "jwt.secret",
                   "short-Secret-Value-123");
}

Test(http_config, example_jwt_secret_is_refused, .timeout = 60)
{
    const char *root = getenv("HERALD_SOURCE_DIR");
    cr_assert(root, "HERALD_SOURCE_DIR is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/herald.example.json", root);
    json_t *example = json_load_file(path, 0, NULL);
    cr_assert(example, "cannot read %s", path);
    const char *secret =
        json_string_value(json_object_get(json_object_get(example, "jwt"), "secret"));
    cr_assert(secret && strlen(secret) >= 32, "the example config has no long jwt.secret");
    json_t *over = json_pack("{s:{s:s}}", "jwt", "secret", secret);
    char *text = json_dumps(over, 0);
    expect_refused(text, "jwt.secret", secret);
    free(text);
    json_decref(over);
    json_decref(example);
}

Test(http_config, cors_wildcard_with_credentials_is_refused, .timeout = 60)
{
    expect_refused("{\"cors\":{\"allowed_origins\":[\"*\"],\"allow_credentials\":true}}", "cors.",
                   NULL);
}

Test(http_config, insecure_cookie_outside_dev_mode_is_refused, .timeout = 60)
{
    expect_refused("{\"dev_mode\":false,\"cookie\":{\"secure\":false}}", "cookie.secure", NULL);
}

Test(http_config, insecure_cookie_in_dev_mode_is_allowed, .timeout = 60)
{
    struct run run;
    run_with(&run, "check-config", "{\"dev_mode\":true,\"cookie\":{\"secure\":false}}");
    cr_assert_eq(run.code, 0, "check-config exited %d:\n%s", run.code, run.output);
    run_free(&run);
}

Test(http_config, unknown_key_is_refused, .timeout = 60)
{
    expect_refused("{\"server\":{\"max_conections\":5}}", "max_conections", NULL);
    expect_refused("{\"bogus_top_level\":1}", "bogus_top_level", NULL);
}

Test(http_config, every_problem_is_reported, .timeout = 60)
{
    struct run run;
    run_with(&run, "check-config",
             "{\"jwt\":{\"secret\":\"tooShortSecretXyz\"},\"log\":{\"levle\":\"info\"}}");
    cr_assert_eq(run.code, 2, "exit %d:\n%s", run.code, run.output);
    cr_assert(strstr(run.output, "jwt.secret"), "jwt.secret not named:\n%s", run.output);
    cr_assert(strstr(run.output, "levle"), "log.levle not named:\n%s", run.output);
    cr_assert(!strstr(run.output, "tooShortSecretXyz"), "the secret was printed");
    run_free(&run);
}

Test(http_config, malformed_json_is_refused, .timeout = 60)
{
    struct run run;
    hd_test_make_dir(run.dir, sizeof run.dir);
    snprintf(run.path, sizeof run.path, "%s/herald.json", run.dir);
    FILE *f = fopen(run.path, "w");
    cr_assert(f);
    fputs("{\"dev_mode\": true, ", f);
    fclose(f);
    const char *args[] = {"check-config", "--config", run.path, NULL};
    run.code = hd_test_run_herald(args, run.dir, RUN_TIMEOUT_MS, &run.output);
    cr_assert_eq(run.code, 2, "exit %d for truncated JSON:\n%s", run.code, run.output);
    run_free(&run);
}
