#include "herald/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

_Noreturn void hd__assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"assertion failed: %s\",\"at\":\"%s:%d\"}\n",
            cond, file, line);
    abort();
}

static _Noreturn void out_of_memory(size_t n)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
    abort();
}

void *hd_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (HD_UNLIKELY(!p))
        out_of_memory(n);
    return p;
}

void *hd_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (HD_UNLIKELY(!p))
        out_of_memory(count * size);
    return p;
}

void *hd_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (HD_UNLIKELY(!q))
        out_of_memory(n);
    return q;
}

char *hd_strdup(const char *s)
{
    return hd_strndup(s, strlen(s));
}

char *hd_strndup(const char *s, size_t n)
{
    char *d = hd_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

uint64_t hd_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t hd_now_ms(void)
{
    return hd_now_us() / 1000u;
}

int64_t hd_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned long hd_hash_str(const char *s)
{
    unsigned long h = 1469598103934665603UL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211UL;
    }
    return h;
}

char *hd_strdup_or_null(const char *s)
{
    return s ? hd_strdup(s) : NULL;
}

int hd_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
