/* herald configuration: defaults, JSON file, environment overrides, checks.
 *
 * Precedence (lowest first): built-in defaults, the JSON file, the long
 * environment names (HERALD_ + key path upper-cased, dots as underscores:
 * server.max_connections -> HERALD_SERVER_MAX_CONNECTIONS), the four short
 * names (HERALD_LISTEN, HERALD_DATABASE_URL, HERALD_REDIS_URL,
 * HERALD_JWT_SECRET), then the command line (--listen).
 *
 * A loaded config is immutable and may be read from any thread. */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/** A growable list of owned, NUL-terminated lines (problems or warnings). */
struct hd_strlist {
    char **items;
    size_t len;
    size_t cap;
};

/** Appends a printf-formatted line; the list owns the copy. */
void hd_strlist_addf(struct hd_strlist *list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Frees every line and resets the list to empty (safe on a zeroed list). */
void hd_strlist_clear(struct hd_strlist *list);

struct hd_config {
    bool dev_mode; /* dev_mode: relaxes cookie Secure, allows generated secret */

    struct {
        char *listen_host;       /* server.listen "host:port" split; default 127.0.0.1 */
        int listen_port;         /* default 8080; 0 = pick a free port */
        int io_threads;          /* server.io_threads; 0 = number of cores (resolved) */
        int max_connections;     /* server.max_connections; default 10000 */
        int backlog;             /* server.backlog; default 1024 */
        size_t max_header_bytes; /* server.max_header_bytes; default 8192 -> 431 */
        size_t max_body_bytes;   /* server.max_body_bytes; default 1 MiB -> 413 */
        int header_timeout_ms;   /* server.header_timeout_ms; default 10000 */
        int body_timeout_ms;     /* server.body_timeout_ms; default 30000 */
        int idle_timeout_s;      /* server.idle_timeout_s; keep-alive idle; default 60 */
        int shutdown_grace_s;    /* server.shutdown_grace_s; default 10 */
        char **trusted_proxies;  /* server.trusted_proxies: CIDR strings; default [] */
        size_t n_trusted_proxies;
    } server;

    struct {
        char *secret;      /* jwt.secret / HERALD_JWT_SECRET; >= 32 bytes */
        char *secret_file; /* jwt.secret_file: read when secret unset; generated in dev */
        char *algorithm;   /* jwt.algorithm; default "HS256" */
        char *issuer;      /* jwt.issuer; default "herald" */
        char *audience;    /* jwt.audience; default "herald" */
        int access_ttl_s;  /* jwt.access_ttl_s; default 900 */
        int leeway_s;      /* jwt.leeway_s; default 30 */
    } jwt;

    struct {
        char **allowed_origins; /* cors.allowed_origins; exact origins or "*" */
        size_t n_allowed_origins;
        bool allow_credentials; /* cors.allow_credentials; default false */
        int max_age_s;          /* cors.max_age_s; preflight cache; default 600 */
    } cors;

    struct {
        bool secure;     /* cookie.secure; default true; false only with dev_mode */
        char *same_site; /* cookie.same_site: "Strict" | "Lax" | "None"; default "Lax" */
    } cookie;

    struct {
        char *level; /* log.level: "debug" | "info" | "warn" | "error"; default "info" */
        bool access; /* log.access: one line per request; default true */
    } log;

    struct {
        char *database_url;   /* store.database_url / HERALD_DATABASE_URL; "" = embedded */
        char *sqlite_path;    /* store.sqlite_path: the embedded database; "var/herald.db" */
        int pool_size;        /* store.pool_size: DB worker threads/connections; default 4 */
        int query_timeout_ms; /* store.query_timeout_ms: a stuck query answers 503; 5000 */
        bool auto_migrate;    /* store.auto_migrate: migrate at serve start; default false */
    } store;

    struct {
        char *url; /* redis.url / HERALD_REDIS_URL; "" = in-process only */
    } redis;

    struct {
        int hash_workers;   /* auth.hash_workers: Argon2id threads; 0 = cores (resolved) */
        int argon2_ops;     /* auth.argon2_ops: opslimit; default 2 (INTERACTIVE) */
        int argon2_mem_kib; /* auth.argon2_mem_kib: memlimit; default 65536 (INTERACTIVE) */
    } auth;

    struct {
        int lifetime_s;            /* session.lifetime_s: absolute; default 604800 (7 d) */
        int idle_timeout_s;        /* session.idle_timeout_s: default 86400 (24 h) */
        int max_per_user;          /* session.max_per_user: default 10 */
        char *over_limit;          /* session.over_limit: "evict_oldest" | "reject" */
        int refresh_reuse_grace_s; /* session.refresh_reuse_grace_s: default 10 */
    } session;

    struct {
        int keepalive_s;            /* sse.keepalive_s: a comment ping this often; 30 */
        int retry_ms;               /* sse.retry_ms: the "retry:" sent first; 3000 */
        int max_streams_per_user;   /* sse.max_streams_per_user: 10 */
        size_t client_buffer_bytes; /* sse.client_buffer_bytes: queued per stream; 256 KiB */
        int write_timeout_s;        /* sse.write_timeout_s: unwritable this long: closed; 30 */
        int replay_max;             /* sse.replay_max: more missed: one "reset"; 1000 */
    } sse;

    struct {
        int retention_days;    /* notifications.retention_days: then deleted; 30 */
        size_t max_data_bytes; /* notifications.max_data_bytes: the "data" object; 8 KiB */
    } notifications;

    /* Rate limits: each policy is rule text for hd_gcra_rule_parse ("off" or
     * "10/min burst 5"), checked at load. See docs/configuration.md. */
    struct {
        bool enabled;              /* ratelimit.enabled: master switch; default true */
        size_t max_keys;           /* ratelimit.max_keys: local table bound; 100000 */
        char *redis_down;          /* ratelimit.redis_down: "local" | "allow" | "deny" */
        char *login_ip;            /* per client IP */
        char *login_account;       /* per account (email): failed logins only */
        char *login_ip_account;    /* per client IP + account */
        char *register_ip;         /* per client IP */
        char *refresh_session;     /* per session (rotations) */
        char *refresh_ip;          /* per client IP */
        char *password_user;       /* current-password checks, per user */
        char *publish;             /* per API key, or per user */
        char *stream_connect_user; /* per user */
        char *stream_connect_ip;   /* per client IP */
        char *authenticated;       /* every authenticated route, per user; default off */
    } ratelimit;
};

enum hd_config_flags {
    /* Do not create files (the dev secret) while loading: check-config. */
    HD_CONFIG_NO_SIDE_EFFECTS = 1 << 0,
};

/**
 * Builds a config from defaults, the JSON file at @path (NULL: defaults only),
 * then the environment @envp (NULL-terminated "NAME=value" array, borrowed),
 * then @listen ("HOST:PORT" from --listen, or NULL), which wins over both.
 * Validates everything. When jwt.secret is empty it reads jwt.secret_file;
 * in dev_mode a missing file is created (48 random bytes, base64url, mode
 * 0600, directories 0700) unless HD_CONFIG_NO_SIDE_EFFECTS is set, in which
 * case the returned jwt.secret is "" and serve generates it later.
 * server.io_threads 0 is resolved to the number of online CPUs.
 *
 * Returns a config the caller frees with hd_config_free, or NULL when any
 * problem was found; each problem is one line starting with the key path,
 * appended to @problems. Non-fatal findings (binding 0.0.0.0) go to
 * @warnings. Either list may be NULL (findings are then dropped). Secrets
 * never appear in problems or warnings. Call sodium_init() first. Not
 * thread-safe against concurrent changes to @envp; main thread at start-up.
 */
struct hd_config *hd_config_load(const char *path, char *const *envp, const char *listen, int flags,
                                 struct hd_strlist *problems, struct hd_strlist *warnings);

/** Frees a config from hd_config_load, wiping its strings first (NULL is fine). */
void hd_config_free(struct hd_config *cfg);

/**
 * True when the browser origin @origin (@len bytes, not NUL-terminated,
 * borrowed; NULL is false) is allowed by cors.allowed_origins: an exact,
 * case-sensitive match of an entry, or any origin when the list holds "*".
 * Allocates nothing; any thread.
 */
bool hd_config_origin_allowed(const struct hd_config *cfg, const char *origin, size_t len);

#endif
