/* UTF-8 validation and the JSON escaping that logs and responses rely on. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "herald/log.h"
#include "herald/utf8.h"

Test(utf8, accepts_well_formed_text)
{
    cr_expect(hd_utf8_valid("plain ascii", 11));
    cr_expect(hd_utf8_valid("caf\xc3\xa9", 5));      /* é */
    cr_expect(hd_utf8_valid("\xe2\x82\xac", 3));     /* € */
    cr_expect(hd_utf8_valid("\xf0\x9f\x98\x80", 4)); /* 😀 */
    cr_expect(hd_utf8_valid("", 0));
}

Test(utf8, refuses_malformed_sequences)
{
    cr_expect_not(hd_utf8_valid("\xff\xfe", 2));         /* never UTF-8 */
    cr_expect_not(hd_utf8_valid("\x80", 1));             /* stray continuation */
    cr_expect_not(hd_utf8_valid("\xc3", 1));             /* truncated */
    cr_expect_not(hd_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    cr_expect_not(hd_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    cr_expect_not(hd_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    cr_expect_not(hd_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    cr_expect_not(hd_utf8_valid("a\0b", 3));             /* NUL */
}

/* Escapes @in and checks jansson parses the quoted result to @expect. */
static void expect_json_string(const char *in, size_t n, const char *expect)
{
    char out[256];
    unsigned long len = hd_json_escape(out + 1, sizeof(out) - 3, in, n);
    out[0] = '"';
    out[len + 1] = '"';
    out[len + 2] = '\0';
    json_error_t err;
    json_t *j = json_loads(out, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    cr_assert_not_null(j, "not valid JSON: %s (%s)", out, err.text);
    cr_expect_str_eq(json_string_value(j), expect);
    json_decref(j);
}

Test(json_escape, quotes_backslashes_and_controls_are_escaped)
{
    expect_json_string("a\"b\\c\n\t\x01", 8, "a\"b\\c\n\t\x01");
}

Test(json_escape, valid_utf8_passes_through)
{
    expect_json_string("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "caf\xc3\xa9 \xf0\x9f\x98\x80");
}

Test(json_escape, invalid_bytes_become_replacement_character)
{
    expect_json_string("a\xff"
                       "b\xc3",
                       4,
                       "a\xef\xbf\xbd"
                       "b\xef\xbf\xbd");
}

Test(json_escape, truncates_without_splitting_an_escape)
{
    char out[8];
    unsigned long n = hd_json_escape(out, 5, "abcd\"", 5);
    cr_expect_eq(n, 4, "wrote %lu", n); /* the 2-byte \" escape does not fit */
    cr_expect_eq(memcmp(out, "abcd", 4), 0);
}
