/* A per-I/O-thread cache of verified access tokens.
 *
 * jwt_decode costs ~14 us (DESIGN.md section 7); most requests present a
 * token the same thread verified moments ago. The cache is set-associative:
 * a seeded 64-bit hash of the token picks a set of WAYS slots; a slot holds
 * a copy of the whole token, so a hit needs the hash, the length and every
 * byte to match. Within a set the least recently used slot is replaced, so
 * the cache never holds more than its capacity and never allocates on a hit
 * (a slot's token buffer only grows, on a miss).
 *
 * Only HD_TOKEN_OK results are stored. Entries carry the claims; the
 * validity window is re-checked on every hit with the same rule as a full
 * verify (hd__token_check_window), so a cached token stops working at
 * exp + leeway exactly as an uncached one does. Entries belong to one set
 * of keys: a different hd_token_keys empties the cache first.
 *
 * The byte comparison is memcmp, not constant time: to reach it a probe
 * must already share the 64-bit hash of a cached token, and the hash is
 * keyed with a random per-cache seed, so timing cannot walk a token out of
 * the cache. Only tokens that passed a full verify get in, so hash flooding
 * needs valid tokens; a flooded set only evicts within itself. */
#include "herald/token.h"

#include "herald/core.h"

#include <stdlib.h>
#include <string.h>

#define WAYS 8 /* slots per set */

struct slot {
    uint64_t hash; /* 0: empty */
    uint64_t used; /* cache tick of the last insert or hit */
    char *tok;     /* cap bytes, owned */
    uint32_t len;
    uint32_t cap;
    struct hd_token_claims claims;
};

struct hd_token_cache {
    struct slot *_slots;
    size_t _nslots;   /* a power of two, >= WAYS */
    size_t _set_mask; /* number of sets - 1 */
    uint64_t _seed;
    uint64_t _keys_id; /* the keys the entries were verified with; 0: none yet */
    uint64_t _tick;
    uint64_t _hits, _misses, _evictions;
    size_t _entries;
};

/* ---- hashing ------------------------------------------------------------- */

static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

/* Eight bytes a step (a token is a few hundred bytes); never returns 0. */
static uint64_t hash_token(uint64_t seed, const char *p, size_t n)
{
    const uint64_t k1 = UINT64_C(0x87c37b91114253d5), k2 = UINT64_C(0x4cf5ad432745937f);
    uint64_t h = seed ^ ((uint64_t)n * k2);
    uint64_t w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = rotl(h ^ rotl(w * k1, 31) * k2, 27) * 5 + 0x52dce729;
    }
    w = 0;
    memcpy(&w, p, n);
    h ^= rotl(w * k1, 31) * k2;
    h = fmix(h);
    return h ? h : 1;
}

/* ---- lifetime ------------------------------------------------------------ */

static size_t round_capacity(size_t capacity)
{
    size_t n = WAYS;
    while (n < capacity && n < ((size_t)1 << 24))
        n <<= 1;
    return n;
}

struct hd_token_cache *hd_token_cache_new(size_t capacity)
{
    struct hd_token_cache *c = hd_calloc(1, sizeof(*c));
    c->_nslots = round_capacity(capacity);
    c->_set_mask = c->_nslots / WAYS - 1;
    c->_slots = hd_calloc(c->_nslots, sizeof(*c->_slots));
    if (hd_random_bytes(&c->_seed, sizeof(c->_seed)) != 0)
        c->_seed = hd_now_us() ^ (uint64_t)(uintptr_t)c; /* weaker, still unknown remotely */
    return c;
}

void hd_token_cache_free(struct hd_token_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->_nslots; i++)
        free(c->_slots[i].tok);
    free(c->_slots);
    free(c);
}

void hd_token_cache_stats(const struct hd_token_cache *c, struct hd_token_cache_stats *out)
{
    out->hits = c->_hits;
    out->misses = c->_misses;
    out->evictions = c->_evictions;
    out->entries = c->_entries;
    out->capacity = c->_nslots;
}

/* ---- lookup and insert --------------------------------------------------- */

static struct slot *set_of(struct hd_token_cache *c, uint64_t hash)
{
    return c->_slots + (size_t)(hash & c->_set_mask) * WAYS;
}

static struct slot *find(struct hd_token_cache *c, uint64_t hash, const char *tok, size_t len)
{
    struct slot *set = set_of(c, hash);
    for (int i = 0; i < WAYS; i++) {
        struct slot *s = &set[i];
        if (s->hash == hash && s->len == len && memcmp(s->tok, tok, len) == 0)
            return s;
    }
    return NULL;
}

static void drop(struct hd_token_cache *c, struct slot *s)
{
    s->hash = 0;
    c->_entries--;
}

/* An empty slot of the set, else its least recently used one. */
static struct slot *victim(struct hd_token_cache *c, uint64_t hash)
{
    struct slot *set = set_of(c, hash), *v = &set[0];
    for (int i = 0; i < WAYS; i++) {
        if (set[i].hash == 0)
            return &set[i];
        if (set[i].used < v->used)
            v = &set[i];
    }
    c->_evictions++;
    drop(c, v);
    return v;
}

static void insert(struct hd_token_cache *c, uint64_t hash, const char *tok, size_t len,
                   const struct hd_token_claims *claims)
{
    struct slot *s = victim(c, hash);
    if (s->cap < len) {
        s->cap = (uint32_t)((len + 63) & ~(size_t)63);
        s->tok = hd_realloc(s->tok, s->cap);
    }
    memcpy(s->tok, tok, len);
    s->len = (uint32_t)len;
    s->claims = *claims;
    s->used = ++c->_tick;
    s->hash = hash;
    c->_entries++;
}

/* Entries verified with other keys must never answer for these. */
static void use_keys(struct hd_token_cache *c, const struct hd_token_keys *k)
{
    uint64_t id = hd__token_keys_id(k);
    if (HD_LIKELY(c->_keys_id == id))
        return;
    for (size_t i = 0; i < c->_nslots; i++)
        c->_slots[i].hash = 0;
    c->_entries = 0;
    c->_keys_id = id;
}

enum hd_token_result hd_token_cache_verify(struct hd_token_cache *c, const struct hd_token_keys *k,
                                           const char *token, size_t len, int64_t now_s,
                                           struct hd_token_claims *out)
{
    bool cacheable = token && len > 0 && len <= HD_TOKEN_CACHE_MAX_LEN;
    uint64_t hash = 0;
    if (HD_LIKELY(cacheable)) {
        use_keys(c, k);
        hash = hash_token(c->_seed, token, len);
        struct slot *s = find(c, hash, token, len);
        if (s && hd__token_check_window(k, &s->claims, now_s) == HD_TOKEN_OK) {
            c->_hits++;
            s->used = ++c->_tick;
            *out = s->claims;
            return HD_TOKEN_OK;
        }
        if (s)
            drop(c, s); /* out of its window: the full verify names the reason */
    }
    c->_misses++;
    enum hd_token_result r = hd_token_verify(k, token, len, now_s, out);
    if (r == HD_TOKEN_OK && cacheable)
        insert(c, hash, token, len, out);
    return r;
}
