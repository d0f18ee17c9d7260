#include "herald/log.h"

#include "herald/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int min_level = HD_LOG_INFO; /* set once at start-up, before threads */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int hd_log_set_level(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            min_level = i;
            return 0;
        }
    }
    return -EINVAL;
}

bool hd_log_enabled(enum hd_log_level level)
{
    return (int)level >= min_level;
}

unsigned long hd_json_escape(char *out, unsigned long cap, const char *s, unsigned long n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned long o = 0;
    for (unsigned long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        unsigned long k = 0;
        if (c >= 0x80) {
            /* Copy a well-formed sequence whole; a byte that is not UTF-8
             * becomes U+FFFD, so the output is always valid JSON. */
            size_t len = hd_utf8_seq_len((const unsigned char *)s + i, n - i);
            const char *src = len ? s + i : "\xef\xbf\xbd";
            size_t w = len ? len : 3;
            if (o + w > cap)
                break;
            memcpy(out + o, src, w);
            o += w;
            i += len ? len - 1 : 0;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'u';
            esc[k++] = '0';
            esc[k++] = '0';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        if (o + k > cap)
            break;
        memcpy(out + o, esc, k);
        o += k;
    }
    return o;
}

/* Formats the wall-clock time as RFC 3339 UTC with milliseconds. */
static int format_time(char *buf, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    return snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                    (long)(tv.tv_usec / 1000));
}

void hd_log(enum hd_log_level level, const char *msg, ...)
{
    if (!hd_log_enabled(level))
        return;
    char line[4096];
    char ts[64];
    format_time(ts, sizeof(ts));
    const size_t cap = sizeof(line) - 2; /* room for "}\n" */
    size_t o = (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                                level_names[level]);
    o += hd_json_escape(line + o, cap - o - 1, msg, strlen(msg));
    line[o++] = '"';
    va_list ap;
    va_start(ap, msg);
    for (const char *key = va_arg(ap, const char *); key; key = va_arg(ap, const char *)) {
        const char *val = va_arg(ap, const char *);
        if (!val)
            val = "";
        if (o + strlen(key) + 8 >= cap)
            break;
        o += (size_t)snprintf(line + o, cap - o, ",\"%s\":\"", key);
        o += hd_json_escape(line + o, cap - o - 1, val, strlen(val));
        line[o++] = '"';
    }
    va_end(ap);
    line[o++] = '}';
    line[o++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, o);
    (void)w; /* nowhere left to report a failed log write */
}
