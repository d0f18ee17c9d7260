/* Access tokens: signed JWTs (HS256, HS384 or HS512, as jwt.algorithm says)
 * minted and verified with libjwt 1.10, plus a per-I/O-thread cache of
 * tokens already verified.
 *
 * A valid token only says who signed in and when: it is not proof that the
 * session is still alive. Callers must still check claims.sid against the
 * live-session map on every request (logout works at once), and must still
 * check it after a cache hit.
 *
 * Times in this module are unix SECONDS (JWT NumericDate), not the store's
 * milliseconds. */
#ifndef HERALD_TOKEN_H
#define HERALD_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "herald/store.h" /* HD_ID_LEN, enum hd_role */

struct hd_config;

/* Tokens longer than this are refused as malformed before libjwt sees them. */
#define HD_TOKEN_MAX_LEN 4096
/* Tokens longer than this are verified every time, never cached. */
#define HD_TOKEN_CACHE_MAX_LEN 1024
/* Length of the jti claim: 128 random bits as lowercase hex. */
#define HD_TOKEN_JTI_LEN 32

struct hd_token_claims {
    char sub[HD_ID_LEN + 1]; /* user id */
    char sid[HD_ID_LEN + 1]; /* session id: must be checked for liveness */
    char org[HD_ID_LEN + 1]; /* organization id */
    enum hd_role role;
    int64_t iat, nbf, exp; /* unix seconds */
    char jti[HD_TOKEN_JTI_LEN + 1];
};

/* The signing key and the checks to apply (algorithm, issuer, audience,
 * lifetime, leeway). Immutable after creation: any thread may use it. */
struct hd_token_keys;

/**
 * Builds keys from cfg->jwt: secret (already resolved, at least 32 bytes),
 * algorithm ("HS256" | "HS384" | "HS512"), issuer, audience, access_ttl_s,
 * leeway_s. Copies what it needs: @cfg is borrowed and may be freed after.
 * Returns NULL when any of those is missing or out of range (an empty
 * secret, as hd_config_load returns under HD_CONFIG_NO_SIDE_EFFECTS in dev
 * mode, is refused). Any thread.
 */
struct hd_token_keys *hd_token_keys_new(const struct hd_config *cfg);

/** Wipes the secret and frees @k (NULL is fine). No thread may still use @k. */
void hd_token_keys_free(struct hd_token_keys *k);

/**
 * Mints a signed access token for claims->sub, sid, org and role (sub, sid,
 * org must be UUID-shaped, role a valid enum hd_role). On success sets
 * claims->iat = claims->nbf = @now_s, claims->exp = @now_s + access_ttl_s and
 * claims->jti (128 random bits, hex), adds iss, aud and typ "access", and
 * returns the token: a malloc'd NUL-terminated string the caller frees with
 * free(). Returns NULL (and leaves @claims untouched) on bad input claims, no
 * randomness, or a libjwt failure. Any thread.
 */
char *hd_token_mint(const struct hd_token_keys *k, struct hd_token_claims *claims, int64_t now_s);

enum hd_token_result {
    HD_TOKEN_OK = 0,
    HD_TOKEN_MALFORMED,     /* not three base64url segments, too long, header not JSON */
    HD_TOKEN_BAD_SIGNATURE, /* libjwt refused it: signature, or a payload that is not JSON */
    HD_TOKEN_BAD_ALGORITHM, /* header alg is not exactly the configured one ("none", RS256…) */
    HD_TOKEN_EXPIRED,       /* now > exp + leeway */
    HD_TOKEN_NOT_YET_VALID, /* now + leeway < nbf */
    HD_TOKEN_BAD_ISSUER,    /* iss missing, not a string, or not ours */
    HD_TOKEN_BAD_AUDIENCE,  /* aud missing, not a string (arrays refused), or not ours */
    HD_TOKEN_BAD_CLAIMS,    /* missing/ill-typed exp, nbf, iat, sub, sid, org, role, jti;
                               typ != "access" (a refresh token or anything else) */
};

/** A short snake_case name for logs and metrics ("bad_signature"); never NULL. */
const char *hd_token_result_name(enum hd_token_result r);

/**
 * Verifies @token (@len bytes, borrowed, not necessarily NUL-terminated) at
 * @now_s and, on HD_TOKEN_OK only, fills @out. Checks, in order: shape (three
 * base64url segments, at most HD_TOKEN_MAX_LEN bytes), header alg equal to
 * the configured algorithm, signature (libjwt, with the key), then exp, nbf
 * (both with leeway_s), iss, aud (a string equal to ours: an array is
 * refused), typ == "access", and the shape of every other claim. Does NOT
 * check that the session is alive. Costs a jwt_decode (~14 us): I/O threads
 * go through hd_token_cache_verify. No state; any thread.
 */
enum hd_token_result hd_token_verify(const struct hd_token_keys *k, const char *token, size_t len,
                                     int64_t now_s, struct hd_token_claims *out);

/* A bounded cache of verified tokens. Owned by one I/O thread: only that
 * thread may use it (no locks). */
struct hd_token_cache;

/**
 * Makes a cache holding at most @capacity tokens (rounded up to a power of
 * two, at least 8; 4096 is a sensible default). Memory: about 250 bytes per
 * slot plus each cached token's bytes. Never NULL (aborts on OOM). Any
 * thread creates it; from then on only its owner uses it.
 */
struct hd_token_cache *hd_token_cache_new(size_t capacity);

/** Frees @c and every cached token (NULL is fine). Owner thread. */
void hd_token_cache_free(struct hd_token_cache *c);

/**
 * hd_token_verify through @c. A token verified OK before with the same @k
 * (the whole token bytes compared, not only a hash) whose nbf/exp window
 * (with leeway) still contains @now_s returns its stored claims without
 * calling libjwt: no allocation, no JSON. Anything else is verified in full;
 * OK results no longer than HD_TOKEN_CACHE_MAX_LEN are then stored, evicting
 * the least recently used entry of its set when full. Failures are never
 * stored. Does NOT check that the session is alive. Owner thread only.
 */
enum hd_token_result hd_token_cache_verify(struct hd_token_cache *c, const struct hd_token_keys *k,
                                           const char *token, size_t len, int64_t now_s,
                                           struct hd_token_claims *out);

struct hd_token_cache_stats {
    uint64_t hits;      /* answered from the cache */
    uint64_t misses;    /* verified in full (includes bypasses and failures) */
    uint64_t evictions; /* live entries replaced to make room */
    size_t entries;     /* slots currently holding a token */
    size_t capacity;    /* slots in total */
};

/** Copies @c's counters into @out (for metrics and tests). Owner thread. */
void hd_token_cache_stats(const struct hd_token_cache *c, struct hd_token_cache_stats *out);

/* ---- internal to src/auth (token.c <-> token_cache.c) ------------------- */

/** A process-unique id for @k: the cache forgets what other keys verified. */
uint64_t hd__token_keys_id(const struct hd_token_keys *k);
/** HD_TOKEN_EXPIRED, HD_TOKEN_NOT_YET_VALID or HD_TOKEN_OK for @c at @now_s,
 * with @k's leeway: the one place that decides the validity window. */
enum hd_token_result hd__token_check_window(const struct hd_token_keys *k,
                                            const struct hd_token_claims *c, int64_t now_s);

#endif
