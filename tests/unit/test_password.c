/* Password rules (checked before any hashing) and the Argon2id wrappers. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "herald/config.h"
#include "herald/core.h"
#include "herald/password.h"

/* The cheapest costs libsodium allows: these tests are about behaviour. */
static const struct hd_password_params cheap = {crypto_pwhash_OPSLIMIT_MIN,
                                                crypto_pwhash_MEMLIMIT_MIN};

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
}

TestSuite(password, .init = setup);

static enum hd_password_problem check(const char *pw)
{
    return hd_password_check(pw, strlen(pw), "someone@example.com");
}

Test(password, length_is_12_to_128_bytes)
{
    char buf[200];
    memset(buf, 'x', sizeof(buf));
    cr_expect_eq(hd_password_check(buf, 0, NULL), HD_PASSWORD_TOO_SHORT);
    cr_expect_eq(hd_password_check(buf, 11, NULL), HD_PASSWORD_TOO_SHORT);
    cr_expect_eq(hd_password_check(buf, 12, NULL), HD_PASSWORD_OK);
    cr_expect_eq(hd_password_check(buf, 128, NULL), HD_PASSWORD_OK);
    cr_expect_eq(hd_password_check(buf, 129, NULL), HD_PASSWORD_TOO_LONG);
    cr_expect_eq(hd_password_check(buf, sizeof(buf), NULL), HD_PASSWORD_TOO_LONG);
}

Test(password, length_counts_bytes_not_characters)
{
    char buf[43 * 3 + 1] = "";
    for (int i = 0; i < 43; i++)
        strcat(buf, "\xe2\x82\xac"); /* €, 3 bytes */
    cr_assert_eq(strlen(buf), 129);
    cr_expect_eq(check(buf), HD_PASSWORD_TOO_LONG, "43 characters but 129 bytes");
    buf[42 * 3] = '\0';
    cr_expect_eq(check(buf), HD_PASSWORD_OK, "42 characters, 126 bytes");
    buf[4 * 3] = '\0';
    cr_expect_eq(check(buf), HD_PASSWORD_OK, "4 characters but 12 bytes");
    buf[3 * 3] = '\0';
    cr_expect_eq(check(buf), HD_PASSWORD_TOO_SHORT, "9 bytes");
}

Test(password, embedded_nul_is_refused_not_truncated)
{
    static const char pw[] = "correct horse\0battery staple";
    cr_expect_eq(hd_password_check(pw, sizeof(pw) - 1, NULL), HD_PASSWORD_HAS_NUL);
    static const char tail[] = "correct horse battery\0";
    cr_expect_eq(hd_password_check(tail, sizeof(tail) - 1, NULL), HD_PASSWORD_HAS_NUL);
    static const char head[] = "\0correct horse battery";
    cr_expect_eq(hd_password_check(head, sizeof(head) - 1, NULL), HD_PASSWORD_HAS_NUL);
}

Test(password, invalid_utf8_is_refused)
{
    cr_expect_eq(check("correct horse \xff battery"), HD_PASSWORD_NOT_UTF8);
    cr_expect_eq(check("correct horse \xc0\xaf battery"), HD_PASSWORD_NOT_UTF8);  /* overlong */
    cr_expect_eq(check("correct horse \xed\xa0\x80 batt"), HD_PASSWORD_NOT_UTF8); /* surrogate */
    cr_expect_eq(check("correct horse battery \xe2\x82"), HD_PASSWORD_NOT_UTF8);  /* truncated */
    cr_expect_eq(check("caf\xc3\xa9 correct horse"), HD_PASSWORD_OK);
}

Test(password, equal_to_email_ignoring_ascii_case_is_refused)
{
    const char *email = "Alice.Smith@Example.com";
    const char *pw = "alice.smith@EXAMPLE.COM";
    cr_expect_eq(hd_password_check(pw, strlen(pw), email), HD_PASSWORD_EQUALS_EMAIL);
    cr_expect_eq(hd_password_check(email, strlen(email), email), HD_PASSWORD_EQUALS_EMAIL);
    const char *longer = "alice.smith@example.com!";
    cr_expect_eq(hd_password_check(longer, strlen(longer), email), HD_PASSWORD_OK);
    /* A prefix of the email is not the email. */
    cr_expect_eq(hd_password_check(pw, strlen(pw) - 1, email), HD_PASSWORD_OK);
    /* Only ASCII case folds: É (U+00C9) is not é (U+00E9). */
    const char *accented = "\xc3\x89lodie@example.com";
    cr_expect_eq(hd_password_check(accented, strlen(accented), "\xc3\xa9lodie@example.com"),
                 HD_PASSWORD_OK);
    cr_expect_eq(hd_password_check(pw, strlen(pw), NULL), HD_PASSWORD_OK);
}

Test(password, every_problem_has_its_own_message)
{
    enum hd_password_problem all[] = {HD_PASSWORD_TOO_SHORT, HD_PASSWORD_TOO_LONG,
                                      HD_PASSWORD_HAS_NUL, HD_PASSWORD_NOT_UTF8,
                                      HD_PASSWORD_EQUALS_EMAIL};
    for (size_t i = 0; i < HD_ARRAY_LEN(all); i++) {
        const char *m = hd_password_problem_message(all[i]);
        cr_assert_not_null(m);
        cr_expect_gt(strlen(m), 10);
        for (size_t j = 0; j < i; j++)
            cr_expect_str_neq(m, hd_password_problem_message(all[j]));
    }
    cr_expect_not_null(strstr(hd_password_problem_message(HD_PASSWORD_TOO_LONG), "128"));
}

Test(password, params_come_from_config)
{
    struct hd_config cfg = {0};
    cfg.auth.argon2_ops = 2;
    cfg.auth.argon2_mem_kib = 65536;
    struct hd_password_params p;
    hd_password_params_from_config(&cfg, &p);
    cr_expect_eq(p.ops, crypto_pwhash_OPSLIMIT_INTERACTIVE);
    cr_expect_eq(p.mem_bytes, crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

Test(password, hash_then_verify)
{
    const char *pw = "correct horse battery staple";
    char hash[crypto_pwhash_STRBYTES], again[crypto_pwhash_STRBYTES];
    cr_assert_eq(hd_password_hash(pw, strlen(pw), &cheap, hash), 0);
    cr_expect_eq(strncmp(hash, "$argon2id$", 10), 0, "%s", hash);
    cr_expect(hd_password_verify(hash, pw, strlen(pw)));
    cr_expect_not(hd_password_verify(hash, "correct horse battery staplf", strlen(pw)));
    cr_expect_not(hd_password_verify(hash, "Correct horse battery staple", strlen(pw)));
    /* Never truncated: a prefix or an extension does not match. */
    cr_expect_not(hd_password_verify(hash, pw, strlen(pw) - 1));
    cr_expect_not(hd_password_verify(hash, "correct horse battery staple!", strlen(pw) + 1));
    cr_expect_not(hd_password_verify("not a hash", pw, strlen(pw)));
    /* A random salt each time. */
    cr_assert_eq(hd_password_hash(pw, strlen(pw), &cheap, again), 0);
    cr_expect_str_neq(hash, again);
    cr_expect(hd_password_verify(again, pw, strlen(pw)));
}

Test(password, needs_rehash_follows_the_params)
{
    const char *pw = "correct horse battery staple";
    char hash[crypto_pwhash_STRBYTES];
    cr_assert_eq(hd_password_hash(pw, strlen(pw), &cheap, hash), 0);
    cr_expect_not(hd_password_needs_rehash(hash, &cheap));
    struct hd_password_params more_ops = {cheap.ops + 1, cheap.mem_bytes};
    struct hd_password_params more_mem = {cheap.ops, cheap.mem_bytes * 2};
    cr_expect(hd_password_needs_rehash(hash, &more_ops));
    cr_expect(hd_password_needs_rehash(hash, &more_mem));
    cr_expect(hd_password_needs_rehash("garbage", &cheap));
}

Test(password, another_algorithm_needs_rehash)
{
    const char *pw = "correct horse battery staple";
    char hash[crypto_pwhash_STRBYTES];
    /* Argon2i at the same memory cost (its minimum opslimit is 3). */
    unsigned long long ops = crypto_pwhash_argon2i_OPSLIMIT_MIN;
    cr_assert_eq(crypto_pwhash_str_alg(hash, pw, strlen(pw), ops, cheap.mem_bytes,
                                       crypto_pwhash_ALG_ARGON2I13),
                 0);
    cr_assert_eq(strncmp(hash, "$argon2i$", 9), 0, "%s", hash);
    cr_expect(hd_password_verify(hash, pw, strlen(pw)), "old hashes still verify");
    struct hd_password_params same = {ops, cheap.mem_bytes};
    cr_expect(hd_password_needs_rehash(hash, &same));
}

/* Prints what one hash costs at the INTERACTIVE limits (the login ceiling is
 * cores / this). Asserts only that it ran and verifies: no speed target. */
Test(password, interactive_hash_cost_is_reported, .timeout = 60)
{
    const struct hd_password_params interactive = {crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                                   crypto_pwhash_MEMLIMIT_INTERACTIVE};
    const char *pw = "correct horse battery staple";
    char hash[crypto_pwhash_STRBYTES];
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
        uint64_t t = hd_now_us();
        cr_assert_eq(hd_password_hash(pw, strlen(pw), &interactive, hash), 0);
        t = hd_now_us() - t;
        best = t < best ? t : best;
    }
    uint64_t t = hd_now_us();
    cr_expect(hd_password_verify(hash, pw, strlen(pw)));
    t = hd_now_us() - t;
    fprintf(stderr,
            "argon2id INTERACTIVE (ops=%llu, mem=%zu MiB): hash %.1f ms (best of 3), "
            "verify %.1f ms\n",
            (unsigned long long)interactive.ops, interactive.mem_bytes >> 20, best / 1e3, t / 1e3);
    cr_expect_gt(best, 0);
}
