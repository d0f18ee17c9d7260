/* Runs the tests registered through the TSan stand-in for Criterion: each in
 * a forked child with an alarm for its timeout; prints one result line per
 * test and the closing "N passed, N failed" line. Exit 1 if any failed. */
#include "criterion/criterion.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 256

struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    const struct hd_shim_opts *opts;
};

static struct shim_test tests[MAX_TESTS];
static int n_tests;
static struct {
    const char *suite;
    const struct hd_shim_opts *opts;
} suites[64];
static int n_suites;
static bool expect_failed; /* in the child */

void hd_shim_register(const char *suite, const char *name, void (*fn)(void),
                      const struct hd_shim_opts *opts)
{
    if (n_tests < MAX_TESTS)
        tests[n_tests++] = (struct shim_test){suite, name, fn, opts};
}

void hd_shim_register_suite(const char *suite, const struct hd_shim_opts *opts)
{
    if (n_suites < 64) {
        suites[n_suites].suite = suite;
        suites[n_suites++].opts = opts;
    }
}

void hd_shim_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void hd_shim_fail(bool fatal, const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, what);
    if (fatal)
        _exit(1);
    expect_failed = true;
}

static const struct hd_shim_opts *suite_opts(const char *suite)
{
    for (int i = 0; i < n_suites; i++) {
        if (strcmp(suites[i].suite, suite) == 0)
            return suites[i].opts;
    }
    return NULL;
}

static int run_one(const struct shim_test *t)
{
    const struct hd_shim_opts *so = suite_opts(t->suite);
    void (*init)(void) = t->opts->init ? t->opts->init : so ? so->init : NULL;
    void (*fini)(void) = t->opts->fini ? t->opts->fini : so ? so->fini : NULL;
    double timeout = t->opts->timeout > 0 ? t->opts->timeout : so ? so->timeout : 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (timeout > 0)
            alarm((unsigned)timeout + 1);
        if (init)
            init();
        t->fn();
        if (fini)
            fini();
        _exit(expect_failed ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "%s::%s: killed by signal %d%s\n", t->suite, t->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

int main(void)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        if (tests[i].opts->disabled)
            continue;
        int rc = run_one(&tests[i]);
        fprintf(stderr, "[%s] %s::%s\n", rc == 0 ? "PASS" : "FAIL", tests[i].suite, tests[i].name);
        rc == 0 ? passed++ : failed++;
    }
    fprintf(stderr, "%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
