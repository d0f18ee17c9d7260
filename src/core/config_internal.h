/* Shared between config.c (the key table, parsing, precedence) and
 * config_check.c (value checks and the cross-key safety checks). Loader
 * state lives on the stack of hd_config_load: one thread. */
#ifndef HERALD_CORE_CONFIG_INTERNAL_H
#define HERALD_CORE_CONFIG_INTERNAL_H

#include "herald/config.h"

#include <stdbool.h>
#include <stddef.h>

struct hd__config_loader {
    struct hd_config *cfg;
    struct hd_strlist *problems;
    struct hd_strlist *warnings;
    int flags;
    size_t problems_before;  /* problems->len when the load started */
    const char *secret_from; /* "jwt.secret_file" when the secret was read from it */
    bool secret_settled;     /* left for serve to generate, or its file problem reported */
};

/** Checks one string value of a key; returns NULL when fine, else a static reason. */
typedef const char *(*hd__config_check_fn)(const char *value);

const char *hd__config_check_origin(const char *value);
const char *hd__config_check_cidr(const char *value);
const char *hd__config_check_database_url(const char *value);
const char *hd__config_check_redis_url(const char *value);
const char *hd__config_check_nonempty(const char *value);
const char *hd__config_check_rate_rule(const char *value);

/**
 * Parses "HOST:PORT" or "[IPv6]:PORT". On success returns NULL, sets *host
 * (owned by the caller, brackets removed) and *port. Otherwise returns a
 * static reason and leaves both untouched.
 */
const char *hd__config_parse_listen(const char *text, char **host, int *port);

/**
 * Runs after every source was applied: resolves the secret from
 * jwt.secret_file (generating it in dev_mode when allowed), then the safety
 * checks. Adds problems and warnings to the loader's lists.
 */
void hd__config_check(struct hd__config_loader *ld);

/** The path of the @i-th key ("server.listen"), or NULL past the last one. */
const char *hd__config_key_path(size_t i);

/** Frees @s after wiping it: config strings may hold secrets or passwords. */
void hd__config_free_string(char *s);

#endif
