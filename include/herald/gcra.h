/* GCRA (generic cell rate algorithm) limiter state: one theoretical arrival
 * time (TAT) per key in a bounded open-addressing table. This is the local
 * state a rate-limit actor owns.
 *
 * Thread: a table belongs to one thread (its actor); no locking.
 *
 * Rule semantics: `limit` requests per `window_s` seconds, plus `burst` extra
 * at once. Emission interval T = window_s / limit, tolerance tau = T * burst.
 * A fresh key gets burst + 1 requests immediately, then one per T.
 *
 * Memory bound. A key whose TAT is in the past is equivalent to an unseen key,
 * so it is dropped (lazily when its slot is needed, and by
 * hd_gcra_table_sweep). The table never holds more than max_keys keys and
 * never grows: its memory is fixed at creation, at most
 * HD_GCRA_TABLE_BYTES_MAX(max_keys) = 80 bytes per key + 4 KiB
 * (100,000 keys: 8.0 MB).
 *
 * Overflow trade-off. When the table is full of live keys, a key it does not
 * hold is checked against a shared overflow bucket for that rule (same
 * limit/window/burst). Keys already in the table keep their own state. So an
 * attacker flooding distinct keys cannot grow memory and cannot evict (and so
 * reset) anyone's bucket; the price is that during such a flood, keys first
 * seen after the table filled share one budget — a legitimate newcomer may be
 * refused because of the flood, until live keys expire and free slots (which
 * happens within one window + tolerance once the flood stops). Size max_keys
 * for the expected number of live keys, not for a flood.
 *
 * Keys are copied. Keys up to HD_GCRA_KEY_INLINE bytes are stored verbatim;
 * longer keys are stored as their 32-byte BLAKE2b digest (crypto_generichash),
 * so any key length works and costs the same 64-byte slot. A digest collision
 * would merge two keys' buckets; at 256 bits it does not happen. Slots are
 * found by keyed SipHash (crypto_shorthash, random key per table), so an
 * attacker cannot aim keys at one probe chain.
 */
#ifndef HERALD_GCRA_H
#define HERALD_GCRA_H

#include <stdbool.h>
#include <stddef.h>

/** Keys longer than this are stored as a 32-byte digest. */
#define HD_GCRA_KEY_INLINE 50

/** Bytes of one table slot (one cache line). */
#define HD_GCRA_SLOT_BYTES 64

/** Upper bound of hd_gcra_table_bytes for a table made with @max_keys: load factor <= 0.8. */
#define HD_GCRA_TABLE_BYTES_MAX(max_keys)                                                          \
    (((size_t)(max_keys) + (size_t)(max_keys) / 4 + 1) * HD_GCRA_SLOT_BYTES + 4096)

/** Distinct rules that get their own overflow bucket; further rules share by hash. */
#define HD_GCRA_OVERFLOW_RULES 32

/** A policy: @limit requests per @window_s seconds, @burst extra at once. */
struct hd_gcra_rule {
    int limit;    /* > 0 */
    int window_s; /* > 0 */
    int burst;    /* >= 0 */
};

/**
 * The answer to one check, in the units of the IETF RateLimit header fields:
 * @limit is the rule's quota (for RateLimit-Policy q=, with w=window_s);
 * @remaining how many more cost-1 requests would be allowed right now (r=,
 * 0..burst+1); @reset_s seconds until the key is back to a full burst (t=;
 * round up when printing); @retry_after_s > 0 only when denied: seconds until
 * the same request would be allowed (Retry-After; round up).
 */
struct hd_gcra_verdict {
    bool allowed;
    int limit;
    int remaining;
    double reset_s;
    double retry_after_s;
};

/** Longest rule text hd_gcra_rule_parse accepts. */
#define HD_GCRA_RULE_TEXT_MAX 64

/**
 * Parses a rule written as in the config: "off", or
 * "<limit>/<window>[ burst <n>]" where window is an optional count and a
 * unit: s|sec|second, min|minute, h|hour, d|day ("10/min burst 5",
 * "300/5min burst 30", "100/hour", "2/30s"). Without "burst" the burst is 0
 * (one request, then one per window/limit). Spaces around tokens are
 * optional; the unit is case-insensitive.
 *
 * Returns 1 (a rule, written to @out), 0 ("off"; @out zeroed), or -EINVAL
 * with a short reason in *@why (static text; @why may be NULL) when the text
 * is malformed or outside the bounds hd_gcra_check asserts. Pure.
 */
int hd_gcra_rule_parse(const char *text, struct hd_gcra_rule *out, const char **why);

struct hd_gcra_table;

/**
 * A table for at most @max_keys keys (1 .. 2^31). All memory is allocated here.
 * Returns NULL when @max_keys is out of range. Calls sodium_init().
 */
struct hd_gcra_table *hd_gcra_table_new(size_t max_keys);

/** Frees @t (NULL is fine). */
void hd_gcra_table_free(struct hd_gcra_table *t);

/**
 * Checks @cost units (>= 0; 0 only reports, never changes state) for @key
 * (@key_len bytes, any bytes, borrowed) under @rule at time @now_s (seconds
 * on a monotonic clock; must not go backwards by more than a few ms per key)
 * and fills @out. An allowed check consumes the units; a denied one changes
 * nothing. A @cost above burst + 1 can never be allowed.
 *
 * @rule must be valid (limit > 0, 0 < window_s <= 366 days, 0 <= burst <=
 * 100000; the bounds keep microsecond arithmetic in int64): rules come from
 * validated config, so a bad one is a bug and asserts. A key should always be
 * checked under the same rule (prefix keys with the policy name).
 */
void hd_gcra_check(struct hd_gcra_table *t, const char *key, size_t key_len,
                   const struct hd_gcra_rule *rule, int cost, double now_s,
                   struct hd_gcra_verdict *out);

/** Drops every key whose TAT is <= @now_s. Returns how many. O(capacity). */
size_t hd_gcra_table_sweep(struct hd_gcra_table *t, double now_s);

/** Keys held (including expired ones not yet dropped). */
size_t hd_gcra_table_count(const struct hd_gcra_table *t);

/** Bytes of memory the table uses; fixed at creation, <= HD_GCRA_TABLE_BYTES_MAX. */
size_t hd_gcra_table_bytes(const struct hd_gcra_table *t);

#endif
