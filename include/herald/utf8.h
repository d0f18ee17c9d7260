/* UTF-8 checks shared by request validation and JSON output. Any thread. */
#ifndef HERALD_UTF8_H
#define HERALD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Length (1..4) of the well-formed UTF-8 sequence at @s (@n bytes
 * available), or 0 when it is not one: a stray continuation byte, a
 * truncated sequence, an overlong form, a surrogate, or beyond U+10FFFF.
 */
size_t hd_utf8_seq_len(const unsigned char *s, size_t n);

/** True when @s (@n bytes) is well-formed UTF-8 containing no NUL. */
bool hd_utf8_valid(const char *s, size_t n);

#endif
