/* Small things every module uses: allocation that aborts on out-of-memory,
 * always-on invariant checks, branch hints, time. Any thread. */
#ifndef HERALD_CORE_H
#define HERALD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HD_LIKELY(x)                       __builtin_expect(!!(x), 1)
#define HD_UNLIKELY(x)                     __builtin_expect(!!(x), 0)
#define HD_ARRAY_LEN(a)                    (sizeof(a) / sizeof((a)[0]))
#define HD_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/** Aborts with file:line when an invariant (never input) does not hold. */
#define HD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (HD_UNLIKELY(!(cond)))                                                                  \
            hd__assert_fail(#cond, __FILE__, __LINE__);                                            \
    } while (0)

_Noreturn void hd__assert_fail(const char *cond, const char *file, int line);

/** malloc/calloc/realloc/strdup that never return NULL: they abort on OOM. */
void *hd_malloc(size_t n);
void *hd_calloc(size_t count, size_t size);
void *hd_realloc(void *p, size_t n);
char *hd_strdup(const char *s);
char *hd_strndup(const char *s, size_t n);
/** hd_strdup, or NULL for NULL. */
char *hd_strdup_or_null(const char *s);

/** Monotonic clock in microseconds / milliseconds. */
uint64_t hd_now_us(void);
uint64_t hd_now_ms(void);

/** Wall-clock (CLOCK_REALTIME) milliseconds since the epoch: timestamps that
 * are stored or compared with stored ones (sessions, notifications). */
int64_t hd_wall_ms(void);

/** FNV-1a of a NUL-terminated string: the bucket hash of herald's RCU maps
 * (keys there are ids chosen by herald, not by clients). */
unsigned long hd_hash_str(const char *s);

/** Fills @buf with @len bytes from the kernel CSPRNG. Returns 0 or -errno. */
int hd_random_bytes(void *buf, size_t len);

#endif
