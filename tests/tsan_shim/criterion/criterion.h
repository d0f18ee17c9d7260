/* A minimal stand-in for Criterion's test API, used only by the TSan build.
 *
 * Why: Criterion 2.4 (its BoxFort sandbox) cannot start under
 * ThreadSanitizer ("Could not initialize inheritable arena", upstream
 * Snaipe/Criterion#274, open). The concurrency tests (files named *_mt.c)
 * are compiled against this header in the TSan build so the same test code
 * runs with the race detector; the ASan build uses the real Criterion.
 * Supports what herald's tests use: Test/TestSuite with .init/.fini/.timeout,
 * cr_assert*, cr_expect*. Each test runs in its own forked process. */
#ifndef HERALD_TSAN_SHIM_CRITERION_H
#define HERALD_TSAN_SHIM_CRITERION_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct hd_shim_opts {
    int _unused;
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    const char *description;
    bool disabled;
};

void hd_shim_register(const char *suite, const char *name, void (*fn)(void),
                      const struct hd_shim_opts *opts);
void hd_shim_register_suite(const char *suite, const struct hd_shim_opts *opts);
/** Reports a failed check; a fatal one ends the test process. */
void hd_shim_fail(bool fatal, const char *file, int line, const char *what);
/** Prints the optional user message of a failed check. */
void hd_shim_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define Test(suite, name, ...)                                                                     \
    static void suite##_##name##_impl(void);                                                       \
    static const struct hd_shim_opts suite##_##name##_opts = {0, __VA_ARGS__};                     \
    __attribute__((constructor)) static void suite##_##name##_reg(void)                            \
    {                                                                                              \
        hd_shim_register(#suite, #name, suite##_##name##_impl, &suite##_##name##_opts);            \
    }                                                                                              \
    static void suite##_##name##_impl(void)

#define TestSuite(suite, ...)                                                                      \
    static const struct hd_shim_opts suite##_suite_opts = {0, __VA_ARGS__};                        \
    __attribute__((constructor)) static void suite##_suite_reg(void)                               \
    {                                                                                              \
        hd_shim_register_suite(#suite, &suite##_suite_opts);                                       \
    }

/* The optional message arguments of Criterion: (fmt, args...) or nothing. */
#define HD_SHIM_CHECK(fatal, cond, what, ...)                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            __VA_OPT__(hd_shim_note(__VA_ARGS__);)                                                 \
            hd_shim_fail(fatal, __FILE__, __LINE__, what);                                         \
        }                                                                                          \
    } while (0)

#define cr_assert(cond, ...)       HD_SHIM_CHECK(true, (cond), #cond, __VA_ARGS__)
#define cr_expect(cond, ...)       HD_SHIM_CHECK(false, (cond), #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...)   HD_SHIM_CHECK(true, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_expect_not(cond, ...)   HD_SHIM_CHECK(false, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_fail(...)        HD_SHIM_CHECK(true, false, "failed", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)    HD_SHIM_CHECK(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...)    HD_SHIM_CHECK(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)   HD_SHIM_CHECK(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...)   HD_SHIM_CHECK(false, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)    HD_SHIM_CHECK(true, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)    HD_SHIM_CHECK(false, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)   HD_SHIM_CHECK(true, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...)   HD_SHIM_CHECK(false, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)    HD_SHIM_CHECK(true, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)    HD_SHIM_CHECK(false, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)   HD_SHIM_CHECK(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...)   HD_SHIM_CHECK(false, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)     HD_SHIM_CHECK(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_null(p, ...)     HD_SHIM_CHECK(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) HD_SHIM_CHECK(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) HD_SHIM_CHECK(false, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                                                \
    HD_SHIM_CHECK(true, strcmp((a), (b)) == 0, #a " eq " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)                                                                \
    HD_SHIM_CHECK(false, strcmp((a), (b)) == 0, #a " eq " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)                                                               \
    HD_SHIM_CHECK(true, strcmp((a), (b)) != 0, #a " neq " #b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...)                                                               \
    HD_SHIM_CHECK(false, strcmp((a), (b)) != 0, #a " neq " #b, __VA_ARGS__)
#define cr_log_info(...) fprintf(stderr, __VA_ARGS__)
#define cr_log_warn(...) fprintf(stderr, __VA_ARGS__)

#endif
