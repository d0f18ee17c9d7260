#include "herald/password.h"

#include "herald/config.h"
#include "herald/core.h"
#include "herald/utf8.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Not strncasecmp: that one follows the locale; the rule is ASCII case only. */
static bool equals_ignoring_ascii_case(const char *a, size_t len, const char *b)
{
    if (strlen(b) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

enum hd_password_problem hd_password_check(const char *pw, size_t len, const char *email)
{
    if (len < HD_PASSWORD_MIN_BYTES)
        return HD_PASSWORD_TOO_SHORT;
    if (len > HD_PASSWORD_MAX_BYTES)
        return HD_PASSWORD_TOO_LONG;
    if (memchr(pw, '\0', len))
        return HD_PASSWORD_HAS_NUL;
    if (!hd_utf8_valid(pw, len))
        return HD_PASSWORD_NOT_UTF8;
    if (email && equals_ignoring_ascii_case(pw, len, email))
        return HD_PASSWORD_EQUALS_EMAIL;
    return HD_PASSWORD_OK;
}

const char *hd_password_problem_message(enum hd_password_problem p)
{
    switch (p) {
    case HD_PASSWORD_OK:
        return "password is acceptable";
    case HD_PASSWORD_TOO_SHORT:
        return "password must be at least 12 bytes";
    case HD_PASSWORD_TOO_LONG:
        return "password must be at most 128 bytes";
    case HD_PASSWORD_HAS_NUL:
        return "password must not contain NUL characters";
    case HD_PASSWORD_NOT_UTF8:
        return "password must be valid UTF-8";
    case HD_PASSWORD_EQUALS_EMAIL:
        return "password must not be the email address";
    }
    return "password is not acceptable";
}

void hd_password_params_from_config(const struct hd_config *cfg, struct hd_password_params *out)
{
    out->ops = (unsigned long long)cfg->auth.argon2_ops;
    out->mem_bytes = (size_t)cfg->auth.argon2_mem_kib * 1024u;
}

int hd_password_hash(const char *pw, size_t len, const struct hd_password_params *p, char *out)
{
    HD_ASSERT(p->ops >= crypto_pwhash_OPSLIMIT_MIN && p->ops <= crypto_pwhash_OPSLIMIT_MAX);
    HD_ASSERT(p->mem_bytes >= crypto_pwhash_MEMLIMIT_MIN &&
              p->mem_bytes <= crypto_pwhash_MEMLIMIT_MAX);
    /* With the limits and password length in range, the only failure left in
     * libsodium is the allocation of mem_bytes. */
    if (crypto_pwhash_str_alg(out, pw, len, p->ops, p->mem_bytes, crypto_pwhash_ALG_ARGON2ID13) !=
        0) {
        out[0] = '\0';
        return -ENOMEM;
    }
    return 0;
}

bool hd_password_verify(const char *hash, const char *pw, size_t len)
{
    return crypto_pwhash_str_verify(hash, pw, len) == 0;
}

bool hd_password_needs_rehash(const char *hash, const struct hd_password_params *p)
{
    /* The argon2id variant, not crypto_pwhash_str_needs_rehash: libsodium
     * 1.0.18's generic one answers 0 for an Argon2i hash at the same costs,
     * which would keep a weaker algorithm forever. This one answers -1 for
     * anything that is not Argon2id. */
    return crypto_pwhash_argon2id_str_needs_rehash(hash, p->ops, p->mem_bytes) != 0;
}
