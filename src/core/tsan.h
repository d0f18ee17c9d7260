/* Happens-before annotations for ThreadSanitizer, where liburcu publishes
 * through inline-asm atomics TSan cannot see (queue nodes, RCU pointers).
 * No-ops outside TSan builds. */
#ifndef HERALD_CORE_TSAN_H
#define HERALD_CORE_TSAN_H

#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
/** The writes before this are visible to a thread that later acquires @addr. */
#define HD_TSAN_RELEASE(addr) __tsan_release((void *)(addr))
/** Pairs with HD_TSAN_RELEASE on the same address. */
#define HD_TSAN_ACQUIRE(addr) __tsan_acquire((void *)(addr))
#else
#define HD_TSAN_RELEASE(addr) ((void)(addr))
#define HD_TSAN_ACQUIRE(addr) ((void)(addr))
#endif

#endif
