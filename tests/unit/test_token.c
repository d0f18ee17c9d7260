/* Tests for src/auth/token.c and src/auth/token_cache.c: mint/verify round
 * trips, the security cases of issue 4 (alg none, RS256 header, other key,
 * flipped signature, exp/nbf/iss/aud, refresh token or API key presented as
 * an access token, malformed segments), ill-typed claims, and the cache.
 * Hostile tokens are signed by hand (libsodium HMAC) so that every field,
 * header included, can be chosen. */
#include <criterion/criterion.h>

#include "herald/config.h"
#include "herald/core.h"
#include "herald/token.h"

#include <jansson.h>
#include <jwt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET   "k3Jd9sLq0Zx8Vb7Nm6Pq5Rt4Wy3Ue2Io1Ap0Sd9F" /* 40 bytes */
#define SECRET_B "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn7M" /* another 40 */
#define NOW      INT64_C(1700000000)
#define TTL      900 /* jwt.access_ttl_s default */
#define LEEWAY   30  /* jwt.leeway_s default */
#define HS256_H  "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

#define SUB "0b6f3c1e-9a4d-4e2b-8c7a-1f2e3d4c5b6a"
#define SID "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
#define ORG "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b"

static struct hd_token_keys *keys; /* SECRET, HS256, iss/aud "herald" */

/* Keys from a config built the way serve builds it (hd_config_load). */
static struct hd_token_keys *keys_with(const char *secret, const char *alg, const char *iss,
                                       const char *aud)
{
    char e_secret[128], e_alg[64], e_iss[128], e_aud[128];
    snprintf(e_secret, sizeof(e_secret), "HERALD_JWT_SECRET=%s", secret);
    snprintf(e_alg, sizeof(e_alg), "HERALD_JWT_ALGORITHM=%s", alg);
    snprintf(e_iss, sizeof(e_iss), "HERALD_JWT_ISSUER=%s", iss);
    snprintf(e_aud, sizeof(e_aud), "HERALD_JWT_AUDIENCE=%s", aud);
    char *env[] = {e_secret, e_alg, e_iss, e_aud, NULL};
    struct hd_strlist problems = {0};
    struct hd_config *cfg =
        hd_config_load(NULL, env, NULL, HD_CONFIG_NO_SIDE_EFFECTS, &problems, NULL);
    cr_assert_not_null(cfg, "config: %s", problems.len ? problems.items[0] : "?");
    cr_assert_eq(cfg->jwt.access_ttl_s, TTL);
    cr_assert_eq(cfg->jwt.leeway_s, LEEWAY);
    struct hd_token_keys *k = hd_token_keys_new(cfg);
    hd_config_free(cfg);
    hd_strlist_clear(&problems);
    cr_assert_not_null(k);
    return k;
}

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    keys = keys_with(SECRET, "HS256", "herald", "herald");
}

static void teardown(void)
{
    hd_token_keys_free(keys);
}

TestSuite(token, .init = setup, .fini = teardown);
TestSuite(token_cache, .init = setup, .fini = teardown);

static struct hd_token_claims who(enum hd_role role)
{
    struct hd_token_claims c;
    memset(&c, 0, sizeof(c));
    strcpy(c.sub, SUB);
    strcpy(c.sid, SID);
    strcpy(c.org, ORG);
    c.role = role;
    return c;
}

static char *mint_with(const struct hd_token_keys *k, int64_t now, struct hd_token_claims *c)
{
    *c = who(HD_ROLE_MEMBER);
    char *t = hd_token_mint(k, c, now);
    cr_assert_not_null(t);
    return t;
}

static char *mint(int64_t now)
{
    struct hd_token_claims c;
    return mint_with(keys, now, &c);
}

static enum hd_token_result verify_at(const char *t, int64_t now)
{
    struct hd_token_claims out;
    return hd_token_verify(keys, t, strlen(t), now, &out);
}

#define expect_result(t, now, want)                                                                \
    do {                                                                                           \
        enum hd_token_result r_ = verify_at((t), (now));                                           \
        cr_assert_eq(r_, (want), "%s: got %s, want %s", (t), hd_token_result_name(r_),             \
                     hd_token_result_name(want));                                                  \
    } while (0)

/* ---- hand-built tokens --------------------------------------------------- */

static void b64url(char *out, size_t cap, const void *in, size_t n)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* header.payload.HMAC-SHA256(secret) over the exact JSON texts given. */
static char *sign_raw(const char *secret, const char *header, const char *payload)
{
    size_t cap = 4 * (strlen(header) + strlen(payload)) / 3 + 128;
    char *t = calloc(1, cap);
    b64url(t, cap, header, strlen(header));
    strcat(t, ".");
    b64url(t + strlen(t), cap - strlen(t), payload, strlen(payload));
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)t, strlen(t));
    crypto_auth_hmacsha256_final(&st, mac);
    strcat(t, ".");
    b64url(t + strlen(t), cap - strlen(t), mac, sizeof(mac));
    return t;
}

/* Every claim we mint, valid at NOW. */
static json_t *good_payload(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "iss", "herald",
                     "aud", "herald", "typ", "access", "sub", SUB, "sid", SID, "org", ORG, "role",
                     "admin", "jti", "0123456789abcdef0123456789abcdef", "iat", (json_int_t)NOW,
                     "nbf", (json_int_t)NOW, "exp", (json_int_t)(NOW + TTL));
}

/* Signs @payload (reference taken) with SECRET under the HS256 header. */
static char *sign_json(json_t *payload)
{
    char *p = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(payload);
    char *t = sign_raw(SECRET, HS256_H, p);
    free(p);
    return t;
}

static void expect_payload(json_t *payload, enum hd_token_result want)
{
    char *t = sign_json(payload);
    expect_result(t, NOW, want);
    free(t);
}

static json_t *with(json_t *p, const char *key, json_t *value)
{
    json_object_set_new(p, key, value);
    return p;
}

static json_t *without(json_t *p, const char *key)
{
    json_object_del(p, key);
    return p;
}

/* ---- round trip ---------------------------------------------------------- */

Test(token, mint_then_verify_round_trips_every_claim)
{
    struct hd_token_claims in = who(HD_ROLE_ADMIN), out;
    char *t = hd_token_mint(keys, &in, NOW);
    cr_assert_not_null(t);
    cr_assert_eq(in.iat, NOW);
    cr_assert_eq(in.nbf, NOW);
    cr_assert_eq(in.exp, NOW + TTL);
    cr_assert_eq(strlen(in.jti), HD_TOKEN_JTI_LEN);
    cr_assert_eq(strspn(in.jti, "0123456789abcdef"), HD_TOKEN_JTI_LEN);

    memset(&out, 0xa5, sizeof(out));
    cr_assert_eq(hd_token_verify(keys, t, strlen(t), NOW, &out), HD_TOKEN_OK);
    cr_assert_str_eq(out.sub, SUB);
    cr_assert_str_eq(out.sid, SID);
    cr_assert_str_eq(out.org, ORG);
    cr_assert_eq(out.role, HD_ROLE_ADMIN);
    cr_assert_eq(out.iat, in.iat);
    cr_assert_eq(out.nbf, in.nbf);
    cr_assert_eq(out.exp, in.exp);
    cr_assert_str_eq(out.jti, in.jti);

    /* What libjwt wrote: our header, our claims. */
    jwt_t *j = NULL;
    cr_assert_eq(jwt_decode(&j, t, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    cr_assert_eq(jwt_get_alg(j), JWT_ALG_HS256);
    cr_assert_str_eq(jwt_get_grant(j, "iss"), "herald");
    cr_assert_str_eq(jwt_get_grant(j, "aud"), "herald");
    cr_assert_str_eq(jwt_get_grant(j, "typ"), "access");
    cr_assert_str_eq(jwt_get_grant(j, "role"), "admin");
    jwt_free(j);
    free(t);
}

Test(token, jti_differs_between_mints)
{
    struct hd_token_claims a, b;
    char *ta = mint_with(keys, NOW, &a), *tb = mint_with(keys, NOW, &b);
    cr_assert_str_neq(a.jti, b.jti);
    cr_assert_str_neq(ta, tb);
    free(ta);
    free(tb);
}

Test(token, hs384_and_hs512_round_trip)
{
    const char *algs[] = {"HS384", "HS512"};
    for (size_t i = 0; i < 2; i++) {
        struct hd_token_keys *k = keys_with(SECRET, algs[i], "herald", "herald");
        struct hd_token_claims c, out;
        char *t = mint_with(k, NOW, &c);
        cr_assert_eq(hd_token_verify(k, t, strlen(t), NOW, &out), HD_TOKEN_OK, "%s", algs[i]);
        cr_assert_str_eq(out.jti, c.jti);
        /* HS256 keys with the same secret pin their own algorithm. */
        cr_assert_eq(hd_token_verify(keys, t, strlen(t), NOW, &out), HD_TOKEN_BAD_ALGORITHM);
        free(t);
        hd_token_keys_free(k);
    }
}

Test(token, mint_refuses_claims_it_would_not_verify)
{
    struct hd_token_claims c = who(HD_ROLE_MEMBER);
    strcpy(c.sub, "not-a-uuid");
    cr_assert_null(hd_token_mint(keys, &c, NOW));
    c = who(HD_ROLE_MEMBER);
    c.sid[0] = 'A'; /* upper case: not how the store writes ids */
    cr_assert_null(hd_token_mint(keys, &c, NOW));
    c = who((enum hd_role)7);
    cr_assert_null(hd_token_mint(keys, &c, NOW));
    cr_assert_eq(c.exp, 0, "claims untouched on failure");
}

Test(token, keys_refuse_bad_config)
{
    struct hd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt.secret = SECRET;
    cfg.jwt.algorithm = "HS256";
    cfg.jwt.issuer = "herald";
    cfg.jwt.audience = "herald";
    cfg.jwt.access_ttl_s = TTL;
    cfg.jwt.leeway_s = LEEWAY;
    struct hd_token_keys *k = hd_token_keys_new(&cfg);
    cr_assert_not_null(k);
    hd_token_keys_free(k);
    cfg.jwt.algorithm = "RS256";
    cr_assert_null(hd_token_keys_new(&cfg));
    cfg.jwt.algorithm = "none";
    cr_assert_null(hd_token_keys_new(&cfg));
    cfg.jwt.algorithm = "HS256";
    cfg.jwt.secret = ""; /* dev mode under HD_CONFIG_NO_SIDE_EFFECTS */
    cr_assert_null(hd_token_keys_new(&cfg));
    cfg.jwt.secret = "short-secret-of-31-bytes-......";
    cr_assert_null(hd_token_keys_new(&cfg));
}

Test(token, hand_signed_good_payload_verifies)
{
    /* The helper is right, so every refusal below is about what it changes. */
    struct hd_token_claims out;
    char *t = sign_json(good_payload());
    cr_assert_eq(hd_token_verify(keys, t, strlen(t), NOW, &out), HD_TOKEN_OK);
    cr_assert_eq(out.role, HD_ROLE_ADMIN);
    free(t);
}

Test(token, length_is_honoured_without_nul)
{
    char *t = mint(NOW);
    size_t n = strlen(t);
    char *buf = malloc(n + 8);
    memcpy(buf, t, n);
    memcpy(buf + n, "garbage", 8);
    struct hd_token_claims out;
    cr_assert_eq(hd_token_verify(keys, buf, n, NOW, &out), HD_TOKEN_OK);
    cr_assert_neq(hd_token_verify(keys, buf, n - 1, NOW, &out), HD_TOKEN_OK);
    cr_assert_neq(hd_token_verify(keys, buf, n + 7, NOW, &out), HD_TOKEN_OK);
    free(buf);
    free(t);
}

/* ---- security tests 1-3: algorithm and signature ------------------------- */

/* The base64url character whose 6-bit value is @ch's with bit @bit flipped. */
static char b64_flip(char ch, int bit)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *at = strchr(alphabet, ch);
    cr_assert(at && ch);
    return alphabet[(at - alphabet) ^ (1 << bit)];
}

Test(token, alg_none_with_empty_signature_is_refused)
{
    char h[64], p[1024];
    b64url(h, sizeof(h), "{\"alg\":\"none\"}", 14);
    char *good = sign_json(good_payload());
    const char *body = strchr(good, '.') + 1;
    snprintf(p, sizeof(p), "%s.%.*s.", h, (int)(strchr(body, '.') - body), body);
    expect_result(p, NOW, HD_TOKEN_BAD_ALGORITHM);

    /* A libjwt-made "none" token, and one carrying some signature. */
    jwt_t *j = NULL;
    cr_assert_eq(jwt_new(&j), 0);
    cr_assert_eq(jwt_add_grant(j, "sub", SUB), 0);
    char *none = jwt_encode_str(j);
    jwt_free(j);
    expect_result(none, NOW, HD_TOKEN_BAD_ALGORITHM);
    char *t = sign_raw(SECRET, "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"x\"}");
    expect_result(t, NOW, HD_TOKEN_BAD_ALGORITHM);
    free(t);
    free(none);
    free(good);
}

Test(token, other_secret_is_bad_signature)
{
    struct hd_token_keys *other = keys_with(SECRET_B, "HS256", "herald", "herald");
    struct hd_token_claims c;
    char *t = mint_with(other, NOW, &c);
    expect_result(t, NOW, HD_TOKEN_BAD_SIGNATURE);
    free(t);
    hd_token_keys_free(other);
}

Test(token, key_length_is_exact)
{
    /* A prefix or an extension of the secret is another key: libjwt uses the
     * length we pass, not a C string length of its own. */
    cr_assert_eq(strlen(SECRET), 40);
    char prefix[40];
    memcpy(prefix, SECRET, 39);
    prefix[39] = '\0';
    const char *variants[] = {SECRET "x", prefix};
    for (size_t i = 0; i < 2; i++) {
        struct hd_token_keys *k = keys_with(variants[i], "HS256", "herald", "herald");
        struct hd_token_claims c;
        char *t = mint_with(k, NOW, &c);
        expect_result(t, NOW, HD_TOKEN_BAD_SIGNATURE);
        free(t);
        hd_token_keys_free(k);
    }
}

Test(token, rs256_header_is_refused)
{
    char *t = sign_raw(SECRET, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"sub\":\"x\"}");
    expect_result(t, NOW, HD_TOKEN_BAD_ALGORITHM);
    free(t);
    /* With an RSA-sized signature too (342 base64url characters). */
    char big[1024], h[128], p[128];
    char sig[343];
    memset(sig, 'A', 342);
    sig[342] = '\0';
    b64url(h, sizeof(h), "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", 27);
    b64url(p, sizeof(p), "{\"sub\":\"x\"}", 11);
    snprintf(big, sizeof(big), "%s.%s.%s", h, p, sig);
    expect_result(big, NOW, HD_TOKEN_BAD_ALGORITHM);
}

Test(token, alg_case_and_duplicates_are_refused)
{
    json_t *good = good_payload();
    char *p = json_dumps(good, JSON_COMPACT);
    json_decref(good);
    /* libjwt compares alg with strcasecmp: we do not. */
    char *t = sign_raw(SECRET, "{\"alg\":\"hs256\",\"typ\":\"JWT\"}", p);
    expect_result(t, NOW, HD_TOKEN_BAD_ALGORITHM);
    free(t);
    t = sign_raw(SECRET, "{\"alg\":\"HS256\",\"alg\":\"none\"}", p);
    expect_result(t, NOW, HD_TOKEN_MALFORMED);
    free(t);
    t = sign_raw(SECRET, "{\"typ\":\"JWT\"}", p);
    expect_result(t, NOW, HD_TOKEN_BAD_ALGORITHM);
    free(t);
    t = sign_raw(SECRET, "[\"HS256\"]", p);
    expect_result(t, NOW, HD_TOKEN_MALFORMED);
    free(t);
    t = sign_raw(SECRET, "{\"alg\":\"HS256\",\"typ\":\"JOSE+X\"}", p); /* libjwt: typ JWT */
    expect_result(t, NOW, HD_TOKEN_BAD_SIGNATURE);
    free(t);
    free(p);
}

Test(token, any_changed_signature_character_is_refused)
{
    char *t = mint(NOW);
    size_t n = strlen(t), sig = (size_t)(strrchr(t, '.') - t) + 1;
    /* The last character: flip each of its six bits. For HS256 its two low
     * bits are padding: flipping those still names the same MAC bytes, and
     * must be refused as well (libjwt compares the canonical encoding). */
    char saved_last = t[n - 1];
    for (int bit = 0; bit < 6; bit++) {
        t[n - 1] = b64_flip(saved_last, bit);
        expect_result(t, NOW, HD_TOKEN_BAD_SIGNATURE);
    }
    t[n - 1] = saved_last;
    expect_result(t, NOW, HD_TOKEN_OK);
    for (size_t i = sig; i < n; i++) {
        char saved = t[i];
        t[i] = saved == 'A' ? 'B' : 'A';
        expect_result(t, NOW, HD_TOKEN_BAD_SIGNATURE);
        t[i] = saved;
    }
    free(t);
}

Test(token, flipped_bit_in_last_signature_byte_is_refused)
{
    char *t = mint(NOW);
    char *dot = strrchr(t, '.');
    unsigned char mac[64];
    size_t mac_len = 0;
    cr_assert_eq(sodium_base642bin(mac, sizeof(mac), dot + 1, strlen(dot + 1), NULL, &mac_len, NULL,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                 0);
    cr_assert_eq(mac_len, 32);
    for (int bit = 0; bit < 8; bit++) {
        mac[31] ^= (unsigned char)(1u << bit);
        char forged[1024];
        snprintf(forged, sizeof(forged), "%.*s.", (int)(dot - t), t);
        b64url(forged + strlen(forged), sizeof(forged) - strlen(forged), mac, mac_len);
        expect_result(forged, NOW, HD_TOKEN_BAD_SIGNATURE);
        mac[31] ^= (unsigned char)(1u << bit);
    }
    free(t);
}

Test(token, changed_payload_is_refused)
{
    char *t = mint(NOW); /* role member */
    char *first = strchr(t, '.'), *last = strrchr(t, '.');
    jwt_t *j = NULL;
    cr_assert_eq(jwt_decode(&j, t, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    jwt_del_grants(j, "role");
    jwt_add_grant(j, "role", "admin");
    char *claims = jwt_get_grants_json(j, NULL);
    jwt_free(j);
    char p[1024], forged[2048];
    b64url(p, sizeof(p), claims, strlen(claims));
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(first - t), t, p, last);
    expect_result(forged, NOW, HD_TOKEN_BAD_SIGNATURE);
    free(claims);
    free(t);
}

/* ---- security test 4: time, issuer, audience ----------------------------- */

Test(token, expiry_honours_leeway_to_the_second)
{
    char *t = mint(NOW);
    expect_result(t, NOW + TTL, HD_TOKEN_OK);
    expect_result(t, NOW + TTL + LEEWAY, HD_TOKEN_OK);
    expect_result(t, NOW + TTL + LEEWAY + 1, HD_TOKEN_EXPIRED);
    expect_result(t, INT64_MAX, HD_TOKEN_EXPIRED);
    free(t);
}

Test(token, not_before_honours_leeway_to_the_second)
{
    char *t = mint(NOW);
    expect_result(t, NOW - LEEWAY, HD_TOKEN_OK);
    expect_result(t, NOW - LEEWAY - 1, HD_TOKEN_NOT_YET_VALID);
    expect_result(t, INT64_MIN, HD_TOKEN_NOT_YET_VALID);
    free(t);
    /* A hand-made nbf in the future, exp further on. */
    json_t *p = with(good_payload(), "nbf", json_integer(NOW + 600));
    t = sign_json(p);
    expect_result(t, NOW, HD_TOKEN_NOT_YET_VALID);
    expect_result(t, NOW + 570, HD_TOKEN_OK);
    free(t);
}

Test(token, wrong_issuer_or_audience_is_refused)
{
    struct hd_token_keys *k = keys_with(SECRET, "HS256", "someone-else", "herald");
    struct hd_token_claims c;
    char *t = mint_with(k, NOW, &c);
    expect_result(t, NOW, HD_TOKEN_BAD_ISSUER);
    free(t);
    hd_token_keys_free(k);
    k = keys_with(SECRET, "HS256", "herald", "another-api");
    t = mint_with(k, NOW, &c);
    expect_result(t, NOW, HD_TOKEN_BAD_AUDIENCE);
    free(t);
    hd_token_keys_free(k);

    expect_payload(without(good_payload(), "iss"), HD_TOKEN_BAD_ISSUER);
    expect_payload(with(good_payload(), "iss", json_integer(1)), HD_TOKEN_BAD_ISSUER);
    expect_payload(with(good_payload(), "iss", json_string("herald2")), HD_TOKEN_BAD_ISSUER);
    expect_payload(without(good_payload(), "aud"), HD_TOKEN_BAD_AUDIENCE);
    expect_payload(with(good_payload(), "aud", json_pack("[s]", "herald")), HD_TOKEN_BAD_AUDIENCE);
    expect_payload(with(good_payload(), "aud", json_string("Herald")), HD_TOKEN_BAD_AUDIENCE);
}

/* ---- security test 5: other kinds of token ------------------------------- */

Test(token, typ_must_be_access)
{
    expect_payload(without(good_payload(), "typ"), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "typ", json_string("refresh")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "typ", json_string("ACCESS")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "typ", json_true()), HD_TOKEN_BAD_CLAIMS);
}

Test(token, refresh_token_and_api_key_are_malformed)
{
    unsigned char raw[32];
    char refresh[64];
    randombytes_buf(raw, sizeof(raw));
    b64url(refresh, sizeof(refresh), raw, sizeof(raw));
    cr_assert_eq(strlen(refresh), 43);
    expect_result(refresh, NOW, HD_TOKEN_MALFORMED);
    expect_result("hk_3f9a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d", NOW, HD_TOKEN_MALFORMED);
    expect_result("hk_abc.def.ghi", NOW, HD_TOKEN_MALFORMED); /* right shape, header not JSON */
}

/* ---- security test 10: malformed input never crashes --------------------- */

Test(token, malformed_segments)
{
    const char *bad[] = {
        "",
        ".",
        "..",
        "...",
        "a.b",
        "abcd.efgh",
        "abcd.efgh.ijkl.mnop",
        "abcd..ijkl",
        ".efgh.ijkl",
        "a.bc.de", /* one-character segment: 1 mod 4 */
        "abcd.efghi.jk",
        "ab$d.efgh.ijkl",
        "abcd.ef h.ijkl",
        "abcd.efgh.ij+l",
        "abcd.efgh.ij/l",
        "abcd.efgh.ijk=",
        "Bearer abcd.efgh.ijkl",
        "eyJhbGciOiJIUzI1NiJ9.e30.\xff",
        "e30.e30.e30",                                           /* header {} */
        "bnVsbA.e30.e30",                                        /* header null */
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.bm90IGpzb24.abcd", /* payload "not json" */
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.abcd",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.W10.abcd", /* payload [] */
    };
    for (size_t i = 0; i < HD_ARRAY_LEN(bad); i++) {
        enum hd_token_result r = verify_at(bad[i], NOW);
        cr_assert_neq(r, HD_TOKEN_OK, "%s", bad[i]);
    }
    for (size_t i = 0; i < 17; i++)
        expect_result(bad[i], NOW, HD_TOKEN_MALFORMED);

    struct hd_token_claims out;
    cr_assert_eq(hd_token_verify(keys, NULL, 0, NOW, &out), HD_TOKEN_MALFORMED);
    cr_assert_eq(hd_token_verify(keys, "abcd\0efg.hijk.lmno", 18, NOW, &out), HD_TOKEN_MALFORMED);
}

Test(token, oversized_tokens_are_malformed)
{
    /* 5 KB of valid base64url in three segments. */
    size_t n = 5 * 1024;
    char *t = malloc(n + 1);
    memset(t, 'A', n);
    t[100] = '.';
    t[200] = '.';
    t[n] = '\0';
    expect_result(t, NOW, HD_TOKEN_MALFORMED);
    /* A real token with a 5 KB claim: signed right, still too long. */
    char *pad = malloc(n + 1);
    memset(pad, 'x', n);
    pad[n] = '\0';
    char *big = sign_json(with(good_payload(), "pad", json_string(pad)));
    cr_assert_gt(strlen(big), HD_TOKEN_MAX_LEN);
    expect_result(big, NOW, HD_TOKEN_MALFORMED);
    /* Exactly at the limit is allowed (and long header segments are not). */
    memset(t, 'A', HD_TOKEN_MAX_LEN);
    t[HD_TOKEN_MAX_LEN] = '\0';
    t[300] = '.';
    t[600] = '.';
    expect_result(t, NOW, HD_TOKEN_MALFORMED);
    free(big);
    free(pad);
    free(t);
}

Test(token, ill_typed_claims_are_bad_claims)
{
    expect_payload(with(good_payload(), "exp", json_string("99999999999")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "exp", json_real(1e10)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "exp", json_null()), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "exp", json_integer(0)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "exp", json_integer(-5)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "exp", json_integer(INT64_MAX)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(without(good_payload(), "exp"), HD_TOKEN_BAD_CLAIMS);
    /* libjwt reads a non-integer as 0: nbf "later" must not become nbf 0. */
    expect_payload(with(good_payload(), "nbf", json_string("later")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "nbf", json_pack("[I]", (json_int_t)NOW)),
                   HD_TOKEN_BAD_CLAIMS);
    expect_payload(without(good_payload(), "nbf"), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "iat", json_false()), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "sub", json_integer(42)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "sub", json_string("42")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "sub", json_string(SUB "0")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "sid", json_string("5D4C3B2A-1F0E-4D9C-8B7A-6F5E4D3C2B1A")),
                   HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "sid", json_pack("{s:s}", "id", SID)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(without(good_payload(), "sid"), HD_TOKEN_BAD_CLAIMS);
    expect_payload(without(good_payload(), "org"), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "org", json_string("")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "role", json_string("root")), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "role", json_integer(1)), HD_TOKEN_BAD_CLAIMS);
    expect_payload(without(good_payload(), "role"), HD_TOKEN_BAD_CLAIMS);
    expect_payload(without(good_payload(), "jti"), HD_TOKEN_BAD_CLAIMS);
    expect_payload(with(good_payload(), "jti", json_string("short")), HD_TOKEN_BAD_CLAIMS);
    /* A signed payload that is an array, a number, not JSON at all. */
    char *t = sign_raw(SECRET, HS256_H, "[1,2,3]");
    cr_assert_neq(verify_at(t, NOW), HD_TOKEN_OK);
    free(t);
    t = sign_raw(SECRET, HS256_H, "12");
    cr_assert_neq(verify_at(t, NOW), HD_TOKEN_OK);
    free(t);
    t = sign_raw(SECRET, HS256_H, "{\"sub\":");
    cr_assert_neq(verify_at(t, NOW), HD_TOKEN_OK);
    free(t);
}

Test(token, result_names)
{
    cr_assert_str_eq(hd_token_result_name(HD_TOKEN_OK), "ok");
    cr_assert_str_eq(hd_token_result_name(HD_TOKEN_BAD_SIGNATURE), "bad_signature");
    cr_assert_str_eq(hd_token_result_name(HD_TOKEN_BAD_CLAIMS), "bad_claims");
    cr_assert_str_eq(hd_token_result_name((enum hd_token_result)99), "unknown");
}

/* ---- the cache ----------------------------------------------------------- */

static enum hd_token_result cverify(struct hd_token_cache *c, const char *t, int64_t now,
                                    struct hd_token_claims *out)
{
    return hd_token_cache_verify(c, keys, t, strlen(t), now, out);
}

Test(token_cache, hit_returns_the_same_claims)
{
    struct hd_token_cache *c = hd_token_cache_new(64);
    struct hd_token_claims in, first, second;
    char *t = mint_with(keys, NOW, &in);
    cr_assert_eq(cverify(c, t, NOW, &first), HD_TOKEN_OK);
    memset(&second, 0, sizeof(second));
    cr_assert_eq(cverify(c, t, NOW + 1, &second), HD_TOKEN_OK);
    cr_assert_eq(memcmp(&first, &second, sizeof(first)), 0);
    cr_assert_str_eq(second.jti, in.jti);
    cr_assert_str_eq(second.sid, SID);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.entries, 1);
    free(t);
    hd_token_cache_free(c);
}

Test(token_cache, refuses_an_expired_entry)
{
    struct hd_token_cache *c = hd_token_cache_new(64);
    struct hd_token_claims out;
    char *t = mint(NOW);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    cr_assert_eq(cverify(c, t, NOW + TTL + LEEWAY, &out), HD_TOKEN_OK);
    cr_assert_eq(cverify(c, t, NOW + TTL + LEEWAY + 1, &out), HD_TOKEN_EXPIRED);
    cr_assert_eq(cverify(c, t, NOW + TTL + LEEWAY + 1, &out), HD_TOKEN_EXPIRED);
    /* A clock stepped back before nbf is refused too. */
    cr_assert_eq(cverify(c, t, NOW - LEEWAY - 1, &out), HD_TOKEN_NOT_YET_VALID);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.entries, 0, "the expired entry is dropped");
    free(t);
    hd_token_cache_free(c);
}

Test(token_cache, never_answers_for_a_token_one_byte_away)
{
    struct hd_token_cache *c = hd_token_cache_new(64);
    struct hd_token_claims out;
    char *t = mint(NOW);
    size_t n = strlen(t);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    for (size_t i = 0; i < n; i++) {
        char saved = t[i];
        t[i] = saved == 'A' ? 'B' : 'A';
        memset(&out, 0, sizeof(out));
        enum hd_token_result r = cverify(c, t, NOW, &out);
        cr_assert_neq(r, HD_TOKEN_OK, "byte %zu", i);
        cr_assert_eq(out.sub[0], '\0', "claims written on failure (byte %zu)", i);
        t[i] = saved;
    }
    /* A prefix, and the token with one more byte. */
    cr_assert_neq(hd_token_cache_verify(c, keys, t, n - 1, NOW, &out), HD_TOKEN_OK);
    char *longer = malloc(n + 2);
    memcpy(longer, t, n);
    strcpy(longer + n, "A");
    cr_assert_neq(cverify(c, longer, NOW, &out), HD_TOKEN_OK);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.hits, 1);
    free(longer);
    free(t);
    hd_token_cache_free(c);
}

Test(token_cache, stays_bounded_and_evicts)
{
    const size_t cap = 64;
    struct hd_token_cache *c = hd_token_cache_new(cap);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.capacity, cap);
    char *last = NULL;
    struct hd_token_claims out;
    for (size_t i = 0; i < cap * 3; i++) {
        free(last);
        last = mint(NOW); /* a fresh jti each time: distinct tokens */
        cr_assert_eq(cverify(c, last, NOW, &out), HD_TOKEN_OK);
        hd_token_cache_stats(c, &st);
        cr_assert_leq(st.entries, cap);
    }
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.misses, cap * 3);
    cr_assert_geq(st.evictions, cap * 2);
    cr_assert_eq(st.entries + st.evictions, cap * 3);
    cr_assert_eq(cverify(c, last, NOW, &out), HD_TOKEN_OK); /* the newest is still there */
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.hits, 1);
    free(last);
    hd_token_cache_free(c);
}

Test(token_cache, small_capacity_is_rounded_up)
{
    struct hd_token_cache *c = hd_token_cache_new(0);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.capacity, 8);
    hd_token_cache_free(c);
    c = hd_token_cache_new(4097);
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.capacity, 8192);
    hd_token_cache_free(c);
}

Test(token_cache, failures_are_not_cached)
{
    struct hd_token_cache *c = hd_token_cache_new(64);
    struct hd_token_claims out;
    char *t = sign_json(with(good_payload(), "typ", json_string("refresh")));
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_BAD_CLAIMS);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_BAD_CLAIMS);
    cr_assert_eq(cverify(c, "garbage", NOW, &out), HD_TOKEN_MALFORMED);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.entries, 0);
    cr_assert_eq(st.hits, 0);
    free(t);
    hd_token_cache_free(c);
}

Test(token_cache, other_keys_do_not_see_cached_entries)
{
    struct hd_token_cache *c = hd_token_cache_new(64);
    struct hd_token_keys *other = keys_with(SECRET_B, "HS256", "herald", "herald");
    struct hd_token_claims out;
    char *t = mint(NOW);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    cr_assert_eq(hd_token_cache_verify(c, other, t, strlen(t), NOW, &out), HD_TOKEN_BAD_SIGNATURE);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.misses, 3);
    free(t);
    hd_token_keys_free(other);
    hd_token_cache_free(c);
}

Test(token_cache, long_tokens_bypass_the_cache)
{
    struct hd_token_cache *c = hd_token_cache_new(64);
    struct hd_token_claims out;
    char pad[1100];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    char *t = sign_json(with(good_payload(), "pad", json_string(pad)));
    cr_assert_gt(strlen(t), HD_TOKEN_CACHE_MAX_LEN);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    cr_assert_eq(cverify(c, t, NOW, &out), HD_TOKEN_OK);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.entries, 0);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.misses, 2);
    free(t);
    hd_token_cache_free(c);
}

/* Not a timing assertion: prints what a full verify and a cache hit cost. */
Test(token_cache, cost_of_verify_and_of_a_hit)
{
    enum { N = 100000 };
    struct hd_token_cache *c = hd_token_cache_new(4096);
    struct hd_token_claims out;
    char *t = mint(NOW);
    size_t n = strlen(t);
    int bad = 0;
    uint64_t t0 = hd_now_us();
    for (int i = 0; i < N; i++)
        bad += hd_token_verify(keys, t, n, NOW, &out) != HD_TOKEN_OK;
    uint64_t t1 = hd_now_us();
    for (int i = 0; i < N; i++)
        bad += hd_token_cache_verify(c, keys, t, n, NOW, &out) != HD_TOKEN_OK;
    uint64_t t2 = hd_now_us();
    cr_assert_eq(bad, 0);
    printf("token (%zu bytes), %d iterations: hd_token_verify %.3f us/op, cache hit %.3f us/op\n",
           n, N, (double)(t1 - t0) / N, (double)(t2 - t1) / N);
    struct hd_token_cache_stats st;
    hd_token_cache_stats(c, &st);
    cr_assert_eq(st.hits, N - 1);
    free(t);
    hd_token_cache_free(c);
}
