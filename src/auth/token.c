/* Access tokens: minting and verification with libjwt 1.10.2 (Debian 12).
 *
 * libjwt 1.10 validates almost nothing by itself: jwt_decode takes the
 * algorithm from the token header (with a NULL key it checks no signature at
 * all) and has no notion of exp, nbf, iss or aud. So, in order:
 *
 *   1. shape: three base64url segments, bounded size (before any parsing;
 *      also bounds libjwt's alloca in jwt_b64_decode);
 *   2. header: our own strict parse; alg must be exactly the configured
 *      name, case included ("none", "RS256", "hs256" never reach libjwt's
 *      verifier; libjwt itself compares alg with strcasecmp);
 *   3. jwt_decode WITH the key (exact length), then jwt_get_alg() must
 *      equal the configured algorithm: the pin on what libjwt actually
 *      verified, even if our header parse and libjwt's ever disagreed;
 *   4. every claim, by type, in our code.
 *
 * Signature comparison: libjwt 1.10.2 (jwt_verify_sha_hmac) recomputes the
 * HMAC with OpenSSL, base64url-encodes it and compares the two strings with
 * jwt_strcmp. Upstream 1.10.2 used strcmp (CVE-2024-25189, a timing side
 * channel); Debian's 1.10.2-1+deb12u1 replaced it with jwt_strcmp, which
 * XOR-accumulates over the longer of the two lengths (checked in the
 * installed binary), so its time depends on lengths only, never on content.
 * It compares the canonical encoding, so a non-canonical signature (other
 * unused low bits in the last character) is refused too. We do not
 * reimplement HMAC. */
#include "herald/token.h"

#include "herald/config.h"
#include "herald/core.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Our header is 36 base64url characters; anything near this is not ours. */
#define HEADER_MAX_B64 256
/* Claims beyond year 9999 are refused: keeps exp + leeway far from overflow. */
#define MAX_TIME INT64_C(253402300799)

struct hd_token_keys {
    uint64_t _id;
    jwt_alg_t _alg;
    const char *_alg_name; /* static string: "HS256" | "HS384" | "HS512" */
    unsigned char *_key;
    int _key_len;
    char *_issuer;
    char *_audience;
    int64_t _ttl_s;
    int64_t _leeway_s;
};

static atomic_uint_fast64_t next_keys_id = 1;

/* ---- keys ---------------------------------------------------------------- */

static const char *alg_name(const char *s, jwt_alg_t *alg)
{
    static const struct {
        const char *name;
        jwt_alg_t alg;
    } algs[] = {{"HS256", JWT_ALG_HS256}, {"HS384", JWT_ALG_HS384}, {"HS512", JWT_ALG_HS512}};
    for (size_t i = 0; s && i < HD_ARRAY_LEN(algs); i++) {
        if (strcmp(s, algs[i].name) == 0) {
            *alg = algs[i].alg;
            return algs[i].name;
        }
    }
    return NULL;
}

struct hd_token_keys *hd_token_keys_new(const struct hd_config *cfg)
{
    jwt_alg_t alg = JWT_ALG_NONE;
    const char *name = alg_name(cfg->jwt.algorithm, &alg);
    const char *secret = cfg->jwt.secret;
    if (!name || !secret || strlen(secret) < 32 || strlen(secret) > 4096)
        return NULL;
    if (!cfg->jwt.issuer || !cfg->jwt.issuer[0] || !cfg->jwt.audience || !cfg->jwt.audience[0])
        return NULL;
    if (cfg->jwt.access_ttl_s <= 0 || cfg->jwt.leeway_s < 0 || cfg->jwt.leeway_s > 86400)
        return NULL;

    struct hd_token_keys *k = hd_calloc(1, sizeof(*k));
    k->_id = atomic_fetch_add(&next_keys_id, 1);
    k->_alg = alg;
    k->_alg_name = name;
    k->_key_len = (int)strlen(secret);
    k->_key = hd_malloc((size_t)k->_key_len);
    memcpy(k->_key, secret, (size_t)k->_key_len); /* bytes, no NUL: libjwt takes the length */
    k->_issuer = hd_strdup(cfg->jwt.issuer);
    k->_audience = hd_strdup(cfg->jwt.audience);
    k->_ttl_s = cfg->jwt.access_ttl_s;
    k->_leeway_s = cfg->jwt.leeway_s;
    return k;
}

void hd_token_keys_free(struct hd_token_keys *k)
{
    if (!k)
        return;
    sodium_memzero(k->_key, (size_t)k->_key_len);
    free(k->_key);
    free(k->_issuer);
    free(k->_audience);
    free(k);
}

uint64_t hd__token_keys_id(const struct hd_token_keys *k)
{
    return k->_id;
}

/* ---- claim shapes -------------------------------------------------------- */

static bool is_lower_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* 8-4-4-4-12 lowercase hex, as hd_uuid_v4 writes them. */
static bool is_uuid(const char *s)
{
    for (int i = 0; i < HD_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_lower_hex(s[i]))
            return false; /* also stops at a NUL: it is neither */
    }
    return s[HD_ID_LEN] == '\0';
}

static bool is_jti(const char *s)
{
    for (int i = 0; i < HD_TOKEN_JTI_LEN; i++) {
        if (!is_lower_hex(s[i]))
            return false;
    }
    return s[HD_TOKEN_JTI_LEN] == '\0';
}

static const char *role_name(enum hd_role role)
{
    switch (role) {
    case HD_ROLE_ADMIN:
        return "admin";
    case HD_ROLE_MEMBER:
        return "member";
    }
    return NULL;
}

static bool parse_role(const char *s, enum hd_role *role)
{
    if (s && strcmp(s, "admin") == 0)
        *role = HD_ROLE_ADMIN;
    else if (s && strcmp(s, "member") == 0)
        *role = HD_ROLE_MEMBER;
    else
        return false;
    return true;
}

/* ---- mint ---------------------------------------------------------------- */

static void hex_encode(char *out, const unsigned char *in, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* jwt_add_grant* return 0 or an errno; any failure fails the whole mint. */
static int add_grants(jwt_t *j, const struct hd_token_keys *k, const struct hd_token_claims *c)
{
    return jwt_add_grant(j, "iss", k->_issuer) | jwt_add_grant(j, "aud", k->_audience) |
           jwt_add_grant(j, "typ", "access") | jwt_add_grant(j, "sub", c->sub) |
           jwt_add_grant(j, "sid", c->sid) | jwt_add_grant(j, "org", c->org) |
           jwt_add_grant(j, "role", role_name(c->role)) | jwt_add_grant(j, "jti", c->jti) |
           jwt_add_grant_int(j, "iat", (long)c->iat) | jwt_add_grant_int(j, "nbf", (long)c->nbf) |
           jwt_add_grant_int(j, "exp", (long)c->exp);
}

char *hd_token_mint(const struct hd_token_keys *k, struct hd_token_claims *claims, int64_t now_s)
{
    if (!is_uuid(claims->sub) || !is_uuid(claims->sid) || !is_uuid(claims->org) ||
        !role_name(claims->role))
        return NULL;
    if (now_s <= 0 || now_s > MAX_TIME - k->_ttl_s)
        return NULL;

    struct hd_token_claims c = *claims;
    unsigned char rnd[HD_TOKEN_JTI_LEN / 2];
    if (hd_random_bytes(rnd, sizeof(rnd)) != 0)
        return NULL;
    hex_encode(c.jti, rnd, sizeof(rnd));
    c.iat = now_s;
    c.nbf = now_s;
    c.exp = now_s + k->_ttl_s;

    jwt_t *j = NULL;
    char *token = NULL;
    if (jwt_new(&j) != 0)
        goto out;
    if (jwt_set_alg(j, k->_alg, k->_key, k->_key_len) != 0 || add_grants(j, k, &c) != 0)
        goto out;
    token = jwt_encode_str(j); /* malloc'd by libjwt 1.10: free() */
    if (token)
        *claims = c;
out:
    jwt_free(j); /* wipes its copy of the key */
    return token;
}

/* ---- verify: shape and header -------------------------------------------- */

static bool is_b64url(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/* A base64url segment without padding can never be 1 mod 4 characters. */
static bool seg_len_ok(size_t n, bool may_be_empty)
{
    return (n > 0 || may_be_empty) && n % 4 != 1;
}

/* Three base64url segments, header and payload non-empty; the signature may
 * be empty ("alg":"none") so that such a token is named BAD_ALGORITHM. On
 * true, *header_len is the length of the first segment. */
static bool token_shape_ok(const char *t, size_t len, size_t *header_len)
{
    size_t dots[2], ndots = 0;
    if (len == 0 || len > HD_TOKEN_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '.') {
            if (ndots == 2)
                return false;
            dots[ndots++] = i;
        } else if (!is_b64url((unsigned char)t[i])) {
            return false;
        }
    }
    if (ndots != 2)
        return false;
    *header_len = dots[0];
    return seg_len_ok(dots[0], false) && seg_len_ok(dots[1] - dots[0] - 1, false) &&
           seg_len_ok(len - dots[1] - 1, true);
}

/* Our own parse of the header: strict base64url (libsodium refuses stray
 * bits), JSON object without duplicate keys, "alg" exactly the configured
 * name. */
static enum hd_token_result check_header(const struct hd_token_keys *k, const char *seg, size_t n)
{
    unsigned char raw[HEADER_MAX_B64 / 4 * 3 + 3];
    size_t raw_len = 0;
    if (n > HEADER_MAX_B64 || sodium_base642bin(raw, sizeof(raw), seg, n, NULL, &raw_len, NULL,
                                                sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return HD_TOKEN_MALFORMED;
    json_t *h = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, NULL);
    if (!h)
        return HD_TOKEN_MALFORMED;
    enum hd_token_result r = HD_TOKEN_MALFORMED;
    if (json_is_object(h)) {
        const char *alg = json_string_value(json_object_get(h, "alg"));
        r = alg && strcmp(alg, k->_alg_name) == 0 ? HD_TOKEN_OK : HD_TOKEN_BAD_ALGORITHM;
    }
    json_decref(h);
    return r;
}

/* ---- verify: claims ------------------------------------------------------ */

/* libjwt 1.10.2's jwt_get_grant_int (read from the installed binary): a
 * missing claim returns -1 with errno = ENOENT; a claim that is present but
 * not an integer (string, real, bool, null, array, object) returns
 * json_integer_value()'s 0 with errno = 0. So 0 cannot be told apart from
 * "wrong type": every time claim must be > 0, and we never mint 0. */
static bool get_time(jwt_t *j, const char *name, int64_t *out)
{
    errno = 0;
    long v = jwt_get_grant_int(j, name);
    if (errno != 0 || v <= 0 || v > MAX_TIME)
        return false;
    *out = v;
    return true;
}

/* jwt_get_grant returns NULL for a missing claim and for a non-string. */
static bool copy_uuid(jwt_t *j, const char *name, char *out)
{
    const char *s = jwt_get_grant(j, name);
    if (!s || !is_uuid(s))
        return false;
    memcpy(out, s, HD_ID_LEN + 1);
    return true;
}

static bool grant_equals(jwt_t *j, const char *name, const char *want)
{
    const char *s = jwt_get_grant(j, name);
    return s && strcmp(s, want) == 0;
}

/* True when @a is more than @slack after @b (no overflow for any input). */
static bool later_than(int64_t a, int64_t b, int64_t slack)
{
    int64_t d;
    if (__builtin_sub_overflow(a, b, &d))
        return a > b;
    return d > slack;
}

enum hd_token_result hd__token_check_window(const struct hd_token_keys *k,
                                            const struct hd_token_claims *c, int64_t now_s)
{
    if (later_than(now_s, c->exp, k->_leeway_s))
        return HD_TOKEN_EXPIRED;
    if (later_than(c->nbf, now_s, k->_leeway_s))
        return HD_TOKEN_NOT_YET_VALID;
    return HD_TOKEN_OK;
}

static bool read_identity(jwt_t *j, struct hd_token_claims *c)
{
    const char *jti = jwt_get_grant(j, "jti");
    if (!copy_uuid(j, "sub", c->sub) || !copy_uuid(j, "sid", c->sid) ||
        !copy_uuid(j, "org", c->org) || !parse_role(jwt_get_grant(j, "role"), &c->role) || !jti ||
        !is_jti(jti))
        return false;
    memcpy(c->jti, jti, HD_TOKEN_JTI_LEN + 1);
    return true;
}

static enum hd_token_result read_claims(const struct hd_token_keys *k, jwt_t *j, int64_t now_s,
                                        struct hd_token_claims *c)
{
    if (!get_time(j, "exp", &c->exp) || !get_time(j, "nbf", &c->nbf) ||
        !get_time(j, "iat", &c->iat))
        return HD_TOKEN_BAD_CLAIMS;
    enum hd_token_result r = hd__token_check_window(k, c, now_s);
    if (r != HD_TOKEN_OK)
        return r;
    if (!grant_equals(j, "iss", k->_issuer))
        return HD_TOKEN_BAD_ISSUER;
    if (!grant_equals(j, "aud", k->_audience)) /* string only: an array is refused */
        return HD_TOKEN_BAD_AUDIENCE;
    if (!grant_equals(j, "typ", "access") || !read_identity(j, c))
        return HD_TOKEN_BAD_CLAIMS;
    return HD_TOKEN_OK;
}

enum hd_token_result hd_token_verify(const struct hd_token_keys *k, const char *token, size_t len,
                                     int64_t now_s, struct hd_token_claims *out)
{
    size_t header_len;
    if (!token || !token_shape_ok(token, len, &header_len))
        return HD_TOKEN_MALFORMED;
    enum hd_token_result r = check_header(k, token, header_len);
    if (r != HD_TOKEN_OK)
        return r;

    char buf[HD_TOKEN_MAX_LEN + 1]; /* jwt_decode wants a C string */
    memcpy(buf, token, len);
    buf[len] = '\0';
    jwt_t *j = NULL;
    /* Every jwt_decode failure is EINVAL: a wrong signature, or (only from
     * someone holding the key) a payload that is not JSON. */
    if (jwt_decode(&j, buf, k->_key, k->_key_len) != 0 || !j)
        return HD_TOKEN_BAD_SIGNATURE;
    struct hd_token_claims c;
    memset(&c, 0, sizeof(c));
    if (jwt_get_alg(j) != k->_alg)
        r = HD_TOKEN_BAD_ALGORITHM;
    else
        r = read_claims(k, j, now_s, &c);
    jwt_free(j);
    if (r == HD_TOKEN_OK)
        *out = c;
    return r;
}

const char *hd_token_result_name(enum hd_token_result r)
{
    switch (r) {
    case HD_TOKEN_OK:
        return "ok";
    case HD_TOKEN_MALFORMED:
        return "malformed";
    case HD_TOKEN_BAD_SIGNATURE:
        return "bad_signature";
    case HD_TOKEN_BAD_ALGORITHM:
        return "bad_algorithm";
    case HD_TOKEN_EXPIRED:
        return "expired";
    case HD_TOKEN_NOT_YET_VALID:
        return "not_yet_valid";
    case HD_TOKEN_BAD_ISSUER:
        return "bad_issuer";
    case HD_TOKEN_BAD_AUDIENCE:
        return "bad_audience";
    case HD_TOKEN_BAD_CLAIMS:
        return "bad_claims";
    }
    return "unknown";
}
