/* Password rules and Argon2id hashing through libsodium. Pure functions: any
 * thread. Hashing costs ~0.1 s and 64 MiB at INTERACTIVE limits, so it runs
 * only on the auth actor's workers (herald/auth.h), never on an I/O thread.
 * Call sodium_init() once before any thread uses these. */
#ifndef HERALD_PASSWORD_H
#define HERALD_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

struct hd_config;

#define HD_PASSWORD_MIN_BYTES 12
#define HD_PASSWORD_MAX_BYTES 128

enum hd_password_problem {
    HD_PASSWORD_OK,
    HD_PASSWORD_TOO_SHORT,
    HD_PASSWORD_TOO_LONG,
    HD_PASSWORD_HAS_NUL,
    HD_PASSWORD_NOT_UTF8,
    HD_PASSWORD_EQUALS_EMAIL,
};

/**
 * Checks a candidate password (@len bytes at @pw, borrowed; need not be
 * NUL-terminated) before anything hashes it: 12..128 bytes (bytes, not
 * characters), no NUL anywhere (a "\u0000" from JSON is refused, never
 * truncated), well-formed UTF-8, and not equal to @email ignoring ASCII case
 * (@email borrowed; NULL skips that rule). Returns the first rule broken, in
 * the order of the enum, or HD_PASSWORD_OK.
 */
enum hd_password_problem hd_password_check(const char *pw, size_t len, const char *email);

/** A static, client-safe sentence for the 400 validation_failed message. */
const char *hd_password_problem_message(enum hd_password_problem p);

/** Argon2id costs: opslimit and memlimit in bytes. */
struct hd_password_params {
    unsigned long long ops;
    size_t mem_bytes;
};

/** Fills @out from auth.argon2_ops and auth.argon2_mem_kib. */
void hd_password_params_from_config(const struct hd_config *cfg, struct hd_password_params *out);

/**
 * Hashes @pw (@len bytes, borrowed) with Argon2id13 at @p and a random salt
 * into @out, which must hold crypto_pwhash_STRBYTES (128) bytes: a
 * NUL-terminated "$argon2id$v=19$m=…,t=…,p=1$salt$hash" string. @p must be
 * within libsodium's limits (config validation guarantees it). Returns 0, or
 * -ENOMEM when libsodium could not allocate the memory (@out is then "").
 */
int hd_password_hash(const char *pw, size_t len, const struct hd_password_params *p, char *out);

/**
 * True when @pw (@len bytes) matches @hash (NUL-terminated, any algorithm
 * libsodium knows: Argon2id or Argon2i). Constant-time in the comparison;
 * costs one hash at the parameters stored in @hash. False for a malformed
 * hash, and when the hash could not run (out of memory): it fails closed.
 */
bool hd_password_verify(const char *hash, const char *pw, size_t len);

/**
 * True when @hash should be replaced by a fresh hash at @p: it is not Argon2id
 * (e.g. Argon2i), is malformed, or its costs differ from @p (libsodium's rule:
 * weaker costs, and also stronger ones after an operator lowered them).
 */
bool hd_password_needs_rehash(const char *hash, const struct hd_password_params *p);

#endif
