/* Access-token verification seen from outside (issue 4, security tests 1 to
 * 5): forged and altered JWTs are refused with 401 invalid_token and
 * WWW-Authenticate: Bearer error="invalid_token".
 *
 * The harness gives every server the process's jwt.secret, so these tests
 * can sign tokens as herald would. Each test first shows that a token forged
 * with the right key and the right claims IS accepted: a refusal then comes
 * from the one thing the case changes, not from a mistake in the forging.
 * One backend (the SQLite default) is enough: verification never touches
 * the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <sodium.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

struct fixture {
    struct hd_test_server s;
    struct hd_test_auth_tokens t;
};

/* Starts a server, registers one user, and checks a well-forged token works. */
static void setup(struct fixture *f)
{
    hd_test_server_start(&f->s, NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "jwt");
    hd_test_auth_register(f->s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &f->t);
    hd_test_auth_assert_me(f->s.port, f->t.access, f->t.user_id);
    json_t *claims = hd_test_auth_jwt_good_claims(&f->t);
    char *good = hd_test_auth_jwt_forge(claims);
    cr_assert(good);
    hd_test_auth_assert_me(f->s.port, good, f->t.user_id); /* control: forging is right */
    free(good);
    json_decref(claims);
}

static void finish(struct fixture *f)
{
    hd_test_auth_assert_me(f->s.port, f->t.access, f->t.user_id); /* the real token still works */
    hd_assert_healthy(f->s.port);
    cr_assert_eq(hd_test_server_stop(&f->s), 0, "herald did not exit 0");
}

/* GET /api/me with @token (takes ownership) is 401 invalid_token. */
static void expect_refused(struct fixture *f, char *token, const char *what)
{
    cr_assert(token, "%s: forging failed", what);
    hd_test_auth_assert_refused(f->s.port, token, what);
    free(token);
}

static char *payload_of(json_t *claims)
{
    char *p = json_dumps(claims, JSON_COMPACT);
    cr_assert(p);
    return p;
}

static const char *secret(void)
{
    return hd_test_secret();
}

Test(auth_jwt, alg_none_with_an_empty_signature_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    json_t *claims = hd_test_auth_jwt_good_claims(&f.t);
    char *payload = payload_of(claims);
    static const char *const headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"none\"}", "{\"alg\":\"None\"}",
        "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", "{\"typ\":\"JWT\"}",  "{\"alg\":\"\"}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char what[96];
        snprintf(what, sizeof(what), "header %s, empty signature", headers[i]);
        expect_refused(&f, hd_test_auth_jwt_sign(headers[i], payload, NULL, 0), what);
        snprintf(what, sizeof(what), "header %s, HS256 signature with our key", headers[i]);
        expect_refused(&f, hd_test_auth_jwt_sign(headers[i], payload, secret(), strlen(secret())),
                       what);
    }
    /* And our own valid token with its signature cut off. */
    char *cut = strdup(f.t.access);
    *(strrchr(cut, '.') + 1) = '\0';
    expect_refused(&f, cut, "herald's token without its signature");
    free(payload);
    json_decref(claims);
    finish(&f);
}

Test(auth_jwt, hs256_signed_with_another_key_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    json_t *claims = hd_test_auth_jwt_good_claims(&f.t);
    char *payload = payload_of(claims);
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char other[49];
    memcpy(other, secret(), sizeof(other));
    other[0] = other[0] == 'A' ? 'B' : 'A'; /* one character off */
    expect_refused(&f, hd_test_auth_jwt_sign(hdr, payload, other, strlen(other)),
                   "key one character off");
    expect_refused(&f, hd_test_auth_jwt_sign(hdr, payload, secret(), strlen(secret()) - 1),
                   "key one byte short");
    char longer[64];
    snprintf(longer, sizeof(longer), "%sX", secret());
    expect_refused(&f, hd_test_auth_jwt_sign(hdr, payload, longer, strlen(longer)),
                   "key one byte longer");
    expect_refused(&f, hd_test_auth_jwt_sign(hdr, payload, "", 0), "empty key");
    unsigned char rnd[48];
    randombytes_buf(rnd, sizeof(rnd));
    expect_refused(&f, hd_test_auth_jwt_sign(hdr, payload, rnd, sizeof(rnd)), "random key");
    free(payload);
    json_decref(claims);
    finish(&f);
}

Test(auth_jwt, a_header_claiming_another_algorithm_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    json_t *claims = hd_test_auth_jwt_good_claims(&f.t);
    char *payload = payload_of(claims);
    /* RS256 header, HMAC'd with our secret (the RS/HS key-confusion attack) */
    expect_refused(&f,
                   hd_test_auth_jwt_sign("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, secret(),
                                         strlen(secret())),
                   "RS256 header, HMAC-SHA-256 signature with our key");
    /* RS256 header with a 2048-bit-sized random signature */
    char *rs = hd_test_auth_jwt_sign("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, NULL, 0);
    unsigned char sig[256];
    randombytes_buf(sig, sizeof(sig));
    char sig64[400];
    sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *rs_full = NULL;
    cr_assert(asprintf(&rs_full, "%s%s", rs, sig64) > 0);
    free(rs);
    expect_refused(&f, rs_full, "RS256 header, random 256-byte signature");
    expect_refused(&f,
                   hd_test_auth_jwt_sign("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload, secret(),
                                         strlen(secret())),
                   "ES256 header");
    /* HS512 correctly signed with our key: still not the pinned algorithm */
    expect_refused(&f,
                   hd_test_auth_jwt_sign_hs512("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload,
                                               secret(), strlen(secret())),
                   "HS512 with our key");
    /* an HS256 signature under a header that names HS512 */
    expect_refused(&f,
                   hd_test_auth_jwt_sign("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload, secret(),
                                         strlen(secret())),
                   "HS512 header over an HS256 signature");
    /* two alg keys: whichever one a parser picks, this is not ours */
    expect_refused(&f,
                   hd_test_auth_jwt_sign("{\"alg\":\"none\",\"alg\":\"HS256\"}", payload, secret(),
                                         strlen(secret())),
                   "duplicate alg in the header");
    free(payload);
    json_decref(claims);
    finish(&f);
}

/* @token with bit @bit of the last signature byte flipped (malloc'd). */
static char *flip_last_signature_bit(const char *token, int bit)
{
    const char *sig64 = strrchr(token, '.') + 1;
    unsigned char sig[64];
    size_t n = 0;
    cr_assert_eq(sodium_base642bin(sig, sizeof(sig), sig64, strlen(sig64), NULL, &n, NULL,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                 0);
    cr_assert_eq(n, 32, "an HS256 signature is 32 bytes, got %zu", n);
    sig[n - 1] ^= (unsigned char)(1u << bit);
    char enc[64];
    sodium_bin2base64(enc, sizeof(enc), sig, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = NULL;
    cr_assert(asprintf(&out, "%.*s%s", (int)(sig64 - token), token, enc) > 0);
    return out;
}

Test(auth_jwt, a_flipped_bit_in_the_last_signature_byte_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    /* herald's own token, verified once already (so it sits in the cache) */
    for (int bit = 0; bit < 8; bit++) {
        char what[64];
        snprintf(what, sizeof(what), "bit %d of the last signature byte flipped", bit);
        expect_refused(&f, flip_last_signature_bit(f.t.access, bit), what);
    }
    /* The last base64url character of a 32-byte signature carries 4 data
     * bits and 2 unused ones: a non-canonical encoding must not pass. */
    char *alt = strdup(f.t.access);
    size_t n = strlen(alt);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(b64, alt[n - 1]) - b64);
    alt[n - 1] = b64[v ^ 1];
    expect_refused(&f, alt, "unused low bit of the last base64url character set");
    /* The same on a freshly forged token that was never cached. */
    json_t *claims = hd_test_auth_jwt_good_claims(&f.t);
    char *fresh = hd_test_auth_jwt_forge(claims);
    expect_refused(&f, flip_last_signature_bit(fresh, 0), "uncached token, last bit flipped");
    hd_test_auth_assert_me(f.s.port, fresh, f.t.user_id);
    free(fresh);
    json_decref(claims);
    finish(&f);
}

/* Forges @claims after setting @key to the integer @v. */
static char *with_int(json_t *claims, const char *key, json_int_t v)
{
    json_object_set_new(claims, key, json_integer(v));
    return hd_test_auth_jwt_forge(claims);
}

Test(auth_jwt, expired_not_yet_valid_wrong_issuer_or_audience_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    json_int_t now = (json_int_t)time(NULL);
    json_t *c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "iat", json_integer(now - 7200));
    json_object_set_new(c, "nbf", json_integer(now - 7200));
    expect_refused(&f, with_int(c, "exp", now - 3600), "expired an hour ago");
    expect_refused(&f, with_int(c, "exp", now - 120), "expired two minutes ago (past the leeway)");
    json_decref(c);

    c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "exp", json_integer(now + 7200));
    expect_refused(&f, with_int(c, "nbf", now + 3600), "valid only in an hour");
    json_object_set_new(c, "nbf", json_integer(now));
    json_object_del(c, "exp");
    expect_refused(&f, hd_test_auth_jwt_forge(c), "no exp");
    json_object_set_new(c, "exp", json_string("9999999999"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "exp as a string");
    json_decref(c);

    c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "iss", json_string("someone-else"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "wrong iss");
    json_object_set_new(c, "iss", json_string("Herald"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "iss in another case");
    json_object_del(c, "iss");
    expect_refused(&f, hd_test_auth_jwt_forge(c), "no iss");
    json_decref(c);

    c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "aud", json_string("another-service"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "wrong aud");
    json_object_set_new(c, "aud", json_pack("[s]", "another-service"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "aud an array without ours");
    json_object_del(c, "aud");
    expect_refused(&f, hd_test_auth_jwt_forge(c), "no aud");
    json_decref(c);
    finish(&f);
}

/* An issuer and audience set in the config are the ones checked. */
Test(auth_jwt, configured_issuer_and_audience_are_enforced, .timeout = 60)
{
    struct fixture f;
    hd_test_server_start(&f.s, "{\"jwt\":{\"issuer\":\"https://id.example\",\"audience\":"
                               "\"notify-api\"}}");
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "jwtcfg");
    hd_test_auth_register(f.s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &f.t);
    json_t *c = hd_test_auth_jwt_claims(f.t.access);
    cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), "https://id.example");
    cr_assert_str_eq(json_string_value(json_object_get(c, "aud")), "notify-api");
    json_decref(c);
    c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "iss", json_string("herald"));
    expect_refused(&f, hd_test_auth_jwt_forge(c),
                   "the default iss on a server configured otherwise");
    json_object_set_new(c, "iss", json_string("https://id.example"));
    json_object_set_new(c, "aud", json_string("herald"));
    expect_refused(&f, hd_test_auth_jwt_forge(c),
                   "the default aud on a server configured otherwise");
    json_decref(c);
    finish(&f);
}

Test(auth_jwt, refresh_token_or_api_key_as_access_token_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    expect_refused(&f, strdup(f.t.refresh), "the refresh token as a Bearer token");
    /* An API-key-shaped string: a prefix and 256 random bits, base64url. */
    unsigned char rnd[32];
    randombytes_buf(rnd, sizeof(rnd));
    char key64[64], key[80];
    sodium_bin2base64(key64, sizeof(key64), rnd, sizeof(rnd),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(key, sizeof(key), "hk_%s", key64);
    expect_refused(&f, strdup(key), "an API-key-shaped string as a Bearer token");
    /* A token signed with our key but typed as a refresh token. */
    json_t *c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "typ", json_string("refresh"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "typ refresh");
    json_object_del(c, "typ");
    expect_refused(&f, hd_test_auth_jwt_forge(c), "no typ");
    json_decref(c);
    finish(&f);
}

Test(auth_jwt, access_token_as_refresh_token_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    struct hd_http_response r;
    /* through the cookie path */
    char cookie[HD_TEST_AUTH_ACCESS_CAP + 32];
    snprintf(cookie, sizeof(cookie), "Cookie: herald_refresh=%s", f.t.access);
    const char *headers[] = {cookie, "X-CSRF-Token: 1", NULL};
    cr_assert_eq(hd_test_auth_request(f.s.port, "POST", "/api/auth/refresh", headers, NULL, 0, &r),
                 0);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
    /* a 43-character string that is not a refresh token we issued */
    char fake[44];
    memset(fake, 'A', 43);
    fake[43] = '\0';
    cr_assert_eq(hd_test_auth_refresh_raw(f.s.port, fake, &r), 0);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
    /* in the body, as a client would send it */
    cr_assert_eq(hd_test_auth_refresh_raw(f.s.port, f.t.access, &r), 0);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
    /* and the real refresh token still works afterwards */
    struct hd_test_auth_tokens next;
    hd_test_auth_refresh(f.s.port, f.t.refresh, &next);
    f.t = next;
    finish(&f);
}

/* A valid signature is not enough: the sid must be a live session of sub. */
Test(auth_jwt, a_valid_signature_without_a_live_session_is_refused, .timeout = 60)
{
    struct fixture f;
    setup(&f);
    json_t *c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "sid", json_string("00000000-0000-4000-8000-000000000000"));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "a sid that was never a session");
    json_decref(c);

    struct hd_test_auth_tokens other;
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "jwt-other");
    hd_test_auth_register(f.s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &other);
    c = hd_test_auth_jwt_good_claims(&f.t);
    json_object_set_new(c, "sid", json_string(other.session_id));
    expect_refused(&f, hd_test_auth_jwt_forge(c), "our sub with another user's live sid");
    json_decref(c);
    hd_test_auth_assert_me(f.s.port, other.access, other.user_id);
    finish(&f);
}

/* Expiry on the path real clients take: herald's own token, verified (and
 * cached) while valid, is refused once its exp has passed. The shortest
 * lifetime the config allows is 30 s; leeway 0. */
Test(auth_jwt, a_cached_token_is_refused_once_expired, .timeout = 120)
{
    struct fixture f;
    hd_test_server_start(&f.s, "{\"jwt\":{\"access_ttl_s\":30,\"leeway_s\":0}}");
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "jwtexp");
    hd_test_auth_register(f.s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &f.t);
    json_t *c = hd_test_auth_jwt_claims(f.t.access);
    json_int_t exp = json_integer_value(json_object_get(c, "exp"));
    json_decref(c);
    cr_assert_gt(exp, 0);
    /* use it on several connections (the I/O threads each cache it) */
    for (int i = 0; i < 8; i++)
        hd_test_auth_assert_me(f.s.port, f.t.access, f.t.user_id);
    while ((json_int_t)time(NULL) <= exp + 1)
        hd_test_sleep_ms(250);
    for (int i = 0; i < 8; i++)
        hd_test_auth_assert_refused(f.s.port, f.t.access, "herald's token past its exp");
    /* the session itself is alive: a refresh gives a working token */
    struct hd_test_auth_tokens next;
    hd_test_auth_refresh(f.s.port, f.t.refresh, &next);
    f.t = next;
    finish(&f);
}
