/* A growable byte buffer. Owned by one thread at a time. */
#ifndef HERALD_BUF_H
#define HERALD_BUF_H

#include <stddef.h>
#include <string.h>

struct hd_buf {
    char *data;
    size_t len; /* bytes in use, from data[0] */
    size_t cap;
};

/** Ensures room for @extra more bytes (aborts on OOM). */
void hd_buf_reserve(struct hd_buf *b, size_t extra);

/** Appends printf-formatted text. */
void hd_buf_appendf(struct hd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Drops the first @n bytes (n <= len). */
void hd_buf_consume(struct hd_buf *b, size_t n);

/** Appends @v in decimal (no printf: used on per-request paths). */
void hd_buf_append_uint(struct hd_buf *b, unsigned long long v);

/** Frees the storage and zeroes the buffer; safe on a zeroed buffer. */
void hd_buf_free(struct hd_buf *b);

/** Appends @n bytes. */
static inline void hd_buf_append(struct hd_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return; /* p may be NULL: memcpy must not see it */
    if (b->cap - b->len < n)
        hd_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/** Appends a NUL-terminated string (without the NUL). */
static inline void hd_buf_puts(struct hd_buf *b, const char *s)
{
    hd_buf_append(b, s, strlen(s));
}

#endif
