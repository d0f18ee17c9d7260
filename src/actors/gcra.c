/* GCRA limiter state: a fixed-size linear-probing table of 64-byte slots,
 * backward-shift deletion (no tombstones), per-rule overflow buckets.
 * See include/herald/gcra.h for the contract and the memory trade-off. */
#include "herald/gcra.h"

#include "herald/core.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SLOT_USED   1
#define SLOT_HASHED 2
#define DIGEST_LEN  32
/* Slots examined per new key while the table is full: O(1) work per check,
 * and a flood's stream of new keys walks the whole table every cap/64 keys. */
#define SWEEP_STEP 64
/* Rules beyond these bounds would overflow int64 microseconds; config refuses them. */
#define WINDOW_MAX_S 31622400 /* 366 days */
#define BURST_MAX    100000

struct slot {
    int64_t tat; /* theoretical arrival time, microseconds */
    uint32_t hash;
    uint8_t flags; /* 0: empty */
    uint8_t len;
    uint8_t key[HD_GCRA_KEY_INLINE];
};
_Static_assert(sizeof(struct slot) == HD_GCRA_SLOT_BYTES, "a slot is one cache line");
_Static_assert(DIGEST_LEN <= HD_GCRA_KEY_INLINE, "a digest fits a slot");

struct overflow {
    int limit, window_s, burst;
    bool used;
    int64_t tat;
};

struct hd_gcra_table {
    struct slot *_slots;
    size_t _cap;    /* > _max, so every probe chain ends at an empty slot */
    size_t _count;  /* used slots */
    size_t _max;    /* max_keys */
    size_t _cursor; /* where the incremental sweep continues */
    unsigned char _sipkey[crypto_shorthash_KEYBYTES];
    struct overflow _ovf[HD_GCRA_OVERFLOW_RULES];
};
_Static_assert(sizeof(struct hd_gcra_table) <= 4096, "fixed part within the documented bound");

/* A key as stored: verbatim or digest, plus its table hash. */
struct skey {
    uint32_t hash;
    uint8_t flags;
    uint8_t len;
    uint8_t b[HD_GCRA_KEY_INLINE];
};

struct hd_gcra_table *hd_gcra_table_new(size_t max_keys)
{
    if (max_keys == 0 || max_keys > ((size_t)1 << 31))
        return NULL;
    if (sodium_init() < 0)
        return NULL;
    struct hd_gcra_table *t = hd_calloc(1, sizeof(*t));
    t->_max = max_keys;
    t->_cap = max_keys + max_keys / 4 + 1;
    t->_slots = hd_calloc(t->_cap, sizeof(struct slot));
    randombytes_buf(t->_sipkey, sizeof(t->_sipkey));
    return t;
}

void hd_gcra_table_free(struct hd_gcra_table *t)
{
    if (!t)
        return;
    free(t->_slots);
    free(t);
}

size_t hd_gcra_table_count(const struct hd_gcra_table *t)
{
    return t->_count;
}

size_t hd_gcra_table_bytes(const struct hd_gcra_table *t)
{
    return sizeof(*t) + t->_cap * sizeof(struct slot);
}

static void skey_make(const struct hd_gcra_table *t, struct skey *k, const char *key, size_t len)
{
    memset(k, 0, sizeof(*k));
    k->flags = SLOT_USED;
    if (len <= HD_GCRA_KEY_INLINE) {
        memcpy(k->b, key, len);
        k->len = (uint8_t)len;
    } else {
        crypto_generichash(k->b, DIGEST_LEN, (const unsigned char *)key, len, NULL, 0);
        k->len = DIGEST_LEN;
        k->flags |= SLOT_HASHED;
    }
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, k->b, k->len, t->_sipkey);
    memcpy(&k->hash, h, sizeof(k->hash));
}

/* Maps a 32-bit hash onto [0, cap) without a division (Lemire's fastrange). */
static size_t home(const struct hd_gcra_table *t, uint32_t hash)
{
    return (size_t)(((uint64_t)hash * t->_cap) >> 32);
}

static bool slot_is(const struct slot *s, const struct skey *k)
{
    return s->hash == k->hash && s->flags == k->flags && s->len == k->len &&
           memcmp(s->key, k->b, k->len) == 0;
}

/* Index of @k, or of the empty slot that ends its chain (*found = false).
 * *expired: the first slot on the chain whose key has expired, or SIZE_MAX. */
static size_t probe(const struct hd_gcra_table *t, const struct skey *k, int64_t now, bool *found,
                    size_t *expired)
{
    size_t i = home(t, k->hash);
    *expired = SIZE_MAX;
    for (;;) {
        const struct slot *s = &t->_slots[i];
        *found = s->flags != 0;
        if (!s->flags || slot_is(s, k))
            return i;
        if (*expired == SIZE_MAX && s->tat <= now)
            *expired = i;
        if (++i == t->_cap)
            i = 0;
    }
}

/* Empties slot @i and shifts later members of its cluster back, so every key
 * stays reachable from its home without tombstones. */
static void slot_delete(struct hd_gcra_table *t, size_t i)
{
    size_t j = i;
    for (;;) {
        if (++j == t->_cap)
            j = 0;
        const struct slot *s = &t->_slots[j];
        if (!s->flags)
            break;
        size_t h = home(t, s->hash);
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (movable) {
            t->_slots[i] = *s;
            i = j;
        }
    }
    memset(&t->_slots[i], 0, sizeof(t->_slots[i]));
    t->_count--;
}

/* Drops expired keys among @n slots from @start; a slot refilled by a shift is
 * looked at again. Returns how many were dropped. */
static size_t sweep_range(struct hd_gcra_table *t, size_t start, size_t n, int64_t now)
{
    size_t dropped = 0, i = start % t->_cap;
    for (size_t k = 0; k < n;) {
        const struct slot *s = &t->_slots[i];
        if (s->flags && s->tat <= now) {
            slot_delete(t, i);
            dropped++;
            continue;
        }
        k++;
        if (++i == t->_cap)
            i = 0;
    }
    return dropped;
}

static int64_t to_us(double s)
{
    return (int64_t)llround(s * 1e6);
}

size_t hd_gcra_table_sweep(struct hd_gcra_table *t, double now_s)
{
    /* Start just after an empty slot: no cluster wraps past the start, so a
     * shift never moves an unexamined key behind the scan. */
    size_t e = 0;
    while (t->_slots[e].flags)
        e++;
    return sweep_range(t, e + 1, t->_cap, to_us(now_s));
}

/* Where a key the table does not hold goes: an expired slot on its chain, the
 * empty slot ending it, or SIZE_MAX when the table is full of live keys. */
static size_t slot_for_new(struct hd_gcra_table *t, const struct skey *k, size_t empty,
                           size_t expired, int64_t now)
{
    if (expired != SIZE_MAX)
        return expired;
    if (t->_count < t->_max)
        return empty;
    size_t start = t->_cursor;
    t->_cursor = (start + SWEEP_STEP) % t->_cap;
    if (sweep_range(t, start, SWEEP_STEP, now) == 0)
        return SIZE_MAX;
    bool found;
    size_t i = probe(t, k, now, &found, &expired); /* shifts moved the chain */
    HD_ASSERT(!found);
    return expired != SIZE_MAX ? expired : i;
}

/* The overflow bucket of @r; when all are taken, rules share one by hash. */
static int64_t *overflow_tat(struct hd_gcra_table *t, const struct hd_gcra_rule *r)
{
    uint32_t h = (uint32_t)r->limit * 2654435761u ^ (uint32_t)r->window_s * 2246822519u ^
                 (uint32_t)r->burst * 3266489917u;
    size_t first = h % HD_GCRA_OVERFLOW_RULES;
    for (size_t n = 0; n < HD_GCRA_OVERFLOW_RULES; n++) {
        struct overflow *o = &t->_ovf[(first + n) % HD_GCRA_OVERFLOW_RULES];
        if (!o->used)
            *o = (struct overflow){r->limit, r->window_s, r->burst, true, INT64_MIN};
        if (o->limit == r->limit && o->window_s == r->window_s && o->burst == r->burst)
            return &o->tat;
    }
    return &t->_ovf[first].tat;
}

/* GCRA on *tat. An allowed request moves *tat on; a denied one leaves it. */
static void gcra(int64_t *tat, const struct hd_gcra_rule *r, int cost, int64_t now,
                 struct hd_gcra_verdict *out)
{
    int64_t T = ((int64_t)r->window_s * 1000000 + r->limit / 2) / r->limit;
    T = T > 0 ? T : 1;
    int64_t tol = T * ((int64_t)r->burst + 1); /* tau + T */
    int64_t base = *tat > now ? *tat : now;
    /* A cost above burst + 1 never fits; clamping keeps the product in range. */
    int64_t c = cost <= r->burst + 1 ? cost : (int64_t)r->burst + 2;
    int64_t next = base + T * c;
    out->allowed = next - now <= tol;
    if (out->allowed)
        *tat = next;
    int64_t ahead = (out->allowed ? next : base) - now;
    int64_t room = tol - ahead;
    out->limit = r->limit;
    out->remaining = room > 0 ? (int)(room / T) : 0;
    out->reset_s = (double)ahead / 1e6;
    out->retry_after_s = out->allowed ? 0 : ((double)(base - now) + (double)T * cost - tol) / 1e6;
}

void hd_gcra_check(struct hd_gcra_table *t, const char *key, size_t key_len,
                   const struct hd_gcra_rule *rule, int cost, double now_s,
                   struct hd_gcra_verdict *out)
{
    HD_ASSERT(rule->limit > 0 && rule->window_s > 0 && rule->window_s <= WINDOW_MAX_S);
    HD_ASSERT(rule->burst >= 0 && rule->burst <= BURST_MAX && cost >= 0);
    int64_t now = to_us(now_s);
    struct skey k;
    skey_make(t, &k, key, key_len);
    bool found;
    size_t expired, i = probe(t, &k, now, &found, &expired);
    if (found) {
        gcra(&t->_slots[i].tat, rule, cost, now, out);
        return;
    }
    int64_t tat = INT64_MIN;
    gcra(&tat, rule, cost, now, out);
    if (tat == INT64_MIN || tat <= now)
        return; /* denied or a zero-cost look: nothing worth storing */
    i = slot_for_new(t, &k, i, expired, now);
    if (i == SIZE_MAX) {
        gcra(overflow_tat(t, rule), rule, cost, now, out);
        return;
    }
    struct slot *s = &t->_slots[i];
    if (!s->flags)
        t->_count++;
    s->tat = tat;
    s->hash = k.hash;
    s->flags = k.flags;
    s->len = k.len;
    memcpy(s->key, k.b, sizeof(s->key));
}

/* ---- rule text ------------------------------------------------------------ */

static const char *skip_spaces(const char *p)
{
    while (*p == ' ')
        p++;
    return p;
}

/* Reads a decimal 1..max at *p; advances it. -1 when absent or out of range. */
static long read_count(const char **p, long max)
{
    const char *q = *p;
    long v = 0;
    if (*q < '0' || *q > '9')
        return -1;
    while (*q >= '0' && *q <= '9') {
        v = v * 10 + (*q - '0');
        if (v > max)
            return -1;
        q++;
    }
    *p = q;
    return v;
}

static long unit_seconds(const char **p)
{
    static const struct {
        const char *name;
        long s;
    } units[] = {{"second", 1},  {"sec", 1},  {"s", 1},       {"minute", 60}, {"min", 60},
                 {"hour", 3600}, {"h", 3600}, {"day", 86400}, {"d", 86400}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t n = strlen(units[i].name);
        if (strncasecmp(*p, units[i].name, n) == 0) {
            const char *e = *p + n;
            if (*e == 's' && n > 1) /* "hours", "days", "minutes", "secs" */
                e++;
            *p = e;
            return units[i].s;
        }
    }
    return -1;
}

int hd_gcra_rule_parse(const char *text, struct hd_gcra_rule *out, const char **why)
{
    const char *dummy;
    why = why ? why : &dummy;
    memset(out, 0, sizeof(*out));
    if (strlen(text) > HD_GCRA_RULE_TEXT_MAX) {
        *why = "too long";
        return -EINVAL;
    }
    const char *p = skip_spaces(text);
    if (strncasecmp(p, "off", 3) == 0 && *skip_spaces(p + 3) == '\0')
        return 0;
    long limit = read_count(&p, 1000000000L);
    if (limit < 1) {
        *why = "must be \"off\" or like \"10/min burst 5\" (limit 1 or more)";
        return -EINVAL;
    }
    p = skip_spaces(p);
    if (*p++ != '/') {
        *why = "a '/' must follow the limit, as in \"10/min\"";
        return -EINVAL;
    }
    p = skip_spaces(p);
    long count = 1;
    if (*p >= '0' && *p <= '9') {
        count = read_count(&p, WINDOW_MAX_S);
        p = skip_spaces(p);
    }
    long unit = unit_seconds(&p);
    if (count < 1 || unit < 0 || count * unit > WINDOW_MAX_S) {
        *why = "the window must be like s, 30s, min, 5min, hour or day (at most 366 days)";
        return -EINVAL;
    }
    p = skip_spaces(p);
    long burst = 0;
    if (strncasecmp(p, "burst", 5) == 0) {
        p = skip_spaces(p + 5);
        burst = read_count(&p, BURST_MAX);
        if (burst < 0) {
            *why = "burst must be 0 to 100000";
            return -EINVAL;
        }
        p = skip_spaces(p);
    }
    if (*p != '\0') {
        *why = "unexpected text after the rule";
        return -EINVAL;
    }
    out->limit = (int)limit;
    out->window_s = (int)(count * unit);
    out->burst = (int)burst;
    return 1;
}
