#include "herald/buf.h"

#include "herald/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>

void hd_buf_reserve(struct hd_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = hd_realloc(b->data, cap);
    b->cap = cap;
}

void hd_buf_appendf(struct hd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data ? b->data + b->len : NULL, b->cap - b->len, fmt, ap);
    va_end(ap);
    HD_ASSERT(n >= 0);
    if ((size_t)n >= b->cap - b->len) {
        hd_buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void hd_buf_append_uint(struct hd_buf *b, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    hd_buf_append(b, tmp + sizeof(tmp) - n, (size_t)n);
}

void hd_buf_consume(struct hd_buf *b, size_t n)
{
    HD_ASSERT(n <= b->len);
    if (n == 0)
        return; /* also: an empty buffer may have no data at all */
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void hd_buf_free(struct hd_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
