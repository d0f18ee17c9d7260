/* Structured logs: one JSON object per line on stderr. Any thread.
 * Never pass a password, token or secret to these functions. */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stdbool.h>

enum hd_log_level { HD_LOG_DEBUG, HD_LOG_INFO, HD_LOG_WARN, HD_LOG_ERROR };

/** Sets the minimum level written; "debug"|"info"|"warn"|"error". Returns 0 or -EINVAL. */
int hd_log_set_level(const char *name);

/** True when @level would be written. */
bool hd_log_enabled(enum hd_log_level level);

/**
 * Writes {"time":…,"level":…,"msg":@msg,…} with extra fields given as
 * NULL-terminated pairs of (key, string value), JSON-escaped. Example:
 *   hd_log(HD_LOG_WARN, "binding 0.0.0.0", "key", "server.listen", NULL);
 * One write(2) per line, so lines from threads never interleave.
 */
void hd_log(enum hd_log_level level, const char *msg, ...) __attribute__((sentinel));

/**
 * Appends @s (length @n) to @out JSON-escaped (no quotes added), writing at
 * most @cap bytes; returns the number of bytes written. Never splits an
 * escape or UTF-8 sequence (truncates instead); bytes that are not UTF-8
 * become U+FFFD, so the result is always valid JSON string content. @cap
 * must allow 6 bytes per input byte for the whole input to fit.
 */
unsigned long hd_json_escape(char *out, unsigned long cap, const char *s, unsigned long n);

#endif
