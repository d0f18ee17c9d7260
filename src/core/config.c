/* Configuration keys and where their values come from.
 *
 * Every key is one row of KEYS[]: its path, type, default, place in struct
 * hd_config and limits. Loading applies the defaults, the JSON file, the long
 * environment names, the short ones and --listen, in that order, each value
 * checked as it is stored so a problem can name where it came from. The
 * cross-key safety checks live in config_check.c. */
#include "herald/config.h"
#include "herald/core.h"
#include "core/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum key_type {
    KT_BOOL,    /* bool */
    KT_INT,     /* int, within min..max */
    KT_SIZE,    /* size_t, within min..max */
    KT_STRING,  /* char *, never NULL */
    KT_STRINGS, /* char ** plus a size_t count; NULL when empty */
    KT_LISTEN,  /* "host:port" into a char * host and an int port */
};

struct key_spec {
    const char *path;
    enum key_type type;
    size_t off;                 /* the field in struct hd_config */
    size_t off2;                /* KT_STRINGS: its count; KT_LISTEN: the port */
    long long def;              /* KT_BOOL, KT_INT, KT_SIZE */
    const char *def_str;        /* KT_STRING, KT_LISTEN; KT_STRINGS: comma-separated */
    long long min, max;         /* KT_INT, KT_SIZE */
    const char *const *choices; /* KT_STRING: matched ignoring case, stored as spelled here */
    hd__config_check_fn check;  /* KT_STRING, each KT_STRINGS item */
};

static const char *const LOG_LEVELS[] = {"debug", "info", "warn", "error", NULL};
static const char *const SAME_SITE[] = {"Strict", "Lax", "None", NULL};
static const char *const OVER_LIMIT[] = {"evict_oldest", "reject", NULL};
static const char *const REDIS_DOWN[] = {"local", "allow", "deny", NULL};
static const char *const JWT_ALGORITHMS[] = {"HS256", "HS384", "HS512", NULL};

/* The row macros, kept one initializer per macro (clang-format splits them). */
/* clang-format off */
#define FIELD(f) offsetof(struct hd_config, f)
#define K_BOOL(p, f, d) {.path = p, .type = KT_BOOL, .off = FIELD(f), .def = d}
#define K_INT(p, f, d, lo, hi) \
    {.path = p, .type = KT_INT, .off = FIELD(f), .def = d, .min = lo, .max = hi}
#define K_SIZE(p, f, d, lo, hi) \
    {.path = p, .type = KT_SIZE, .off = FIELD(f), .def = d, .min = lo, .max = hi}
#define K_STR(p, f, d, choices_, check_) \
    {.path = p, .type = KT_STRING, .off = FIELD(f), .def_str = d, .choices = choices_, \
     .check = check_}
#define K_STRS(p, f, n, d, check_) \
    {.path = p, .type = KT_STRINGS, .off = FIELD(f), .off2 = FIELD(n), .def_str = d, \
     .check = check_}
#define K_LISTEN(p, host, port, d) \
    {.path = p, .type = KT_LISTEN, .off = FIELD(host), .off2 = FIELD(port), .def_str = d}
/* clang-format on */

/* To add a key: a field in struct hd_config, a row here, a line in
 * configs/herald.example.json and docs/configuration.md. */
static const struct key_spec KEYS[] = {
    K_BOOL("dev_mode", dev_mode, false),
    K_LISTEN("server.listen", server.listen_host, server.listen_port, "127.0.0.1:8080"),
    K_INT("server.io_threads", server.io_threads, 0, 0, 256),
    K_INT("server.max_connections", server.max_connections, 10000, 1, 1000000),
    K_INT("server.backlog", server.backlog, 1024, 1, 65535),
    K_SIZE("server.max_header_bytes", server.max_header_bytes, 8192, 1024, 1 << 20),
    K_SIZE("server.max_body_bytes", server.max_body_bytes, 1 << 20, 1024, 64 << 20),
    K_INT("server.header_timeout_ms", server.header_timeout_ms, 10000, 100, 3600000),
    K_INT("server.body_timeout_ms", server.body_timeout_ms, 30000, 100, 3600000),
    K_INT("server.idle_timeout_s", server.idle_timeout_s, 60, 1, 86400),
    K_INT("server.shutdown_grace_s", server.shutdown_grace_s, 10, 0, 3600),
    K_STRS("server.trusted_proxies", server.trusted_proxies, server.n_trusted_proxies, NULL,
           hd__config_check_cidr),
    K_STR("jwt.secret", jwt.secret, "", NULL, NULL),
    K_STR("jwt.secret_file", jwt.secret_file, "", NULL, NULL),
    K_STR("jwt.algorithm", jwt.algorithm, "HS256", JWT_ALGORITHMS, NULL),
    K_STR("jwt.issuer", jwt.issuer, "herald", NULL, hd__config_check_nonempty),
    K_STR("jwt.audience", jwt.audience, "herald", NULL, hd__config_check_nonempty),
    K_INT("jwt.access_ttl_s", jwt.access_ttl_s, 900, 30, 86400),
    K_INT("jwt.leeway_s", jwt.leeway_s, 30, 0, 300),
    K_STRS("cors.allowed_origins", cors.allowed_origins, cors.n_allowed_origins, NULL,
           hd__config_check_origin),
    K_BOOL("cors.allow_credentials", cors.allow_credentials, false),
    K_INT("cors.max_age_s", cors.max_age_s, 600, 0, 86400),
    K_BOOL("cookie.secure", cookie.secure, true),
    K_STR("cookie.same_site", cookie.same_site, "Lax", SAME_SITE, NULL),
    K_STR("log.level", log.level, "info", LOG_LEVELS, NULL),
    K_BOOL("log.access", log.access, true),
    K_STR("store.database_url", store.database_url, "", NULL, hd__config_check_database_url),
    K_STR("store.sqlite_path", store.sqlite_path, "var/herald.db", NULL, hd__config_check_nonempty),
    K_INT("store.pool_size", store.pool_size, 4, 1, 64),
    K_INT("store.query_timeout_ms", store.query_timeout_ms, 5000, 100, 600000),
    K_BOOL("store.auto_migrate", store.auto_migrate, false),
    K_STR("redis.url", redis.url, "", NULL, hd__config_check_redis_url),
    K_INT("auth.hash_workers", auth.hash_workers, 0, 0, 64),
    K_INT("auth.argon2_ops", auth.argon2_ops, 2, 2, 16),
    K_INT("auth.argon2_mem_kib", auth.argon2_mem_kib, 65536, 65536, 4194304),
    K_INT("session.lifetime_s", session.lifetime_s, 604800, 60, 31536000),
    K_INT("session.idle_timeout_s", session.idle_timeout_s, 86400, 5, 31536000),
    K_INT("session.max_per_user", session.max_per_user, 10, 1, 1000),
    K_STR("session.over_limit", session.over_limit, "evict_oldest", OVER_LIMIT, NULL),
    K_INT("session.refresh_reuse_grace_s", session.refresh_reuse_grace_s, 10, 0, 300),
    K_INT("sse.keepalive_s", sse.keepalive_s, 30, 1, 3600),
    K_INT("sse.retry_ms", sse.retry_ms, 3000, 100, 600000),
    K_INT("sse.max_streams_per_user", sse.max_streams_per_user, 10, 1, 100000),
    K_SIZE("sse.client_buffer_bytes", sse.client_buffer_bytes, 262144, 4096, 67108864),
    K_INT("sse.write_timeout_s", sse.write_timeout_s, 30, 1, 3600),
    K_INT("sse.replay_max", sse.replay_max, 1000, 1, 100000),
    K_INT("notifications.retention_days", notifications.retention_days, 30, 1, 3650),
    K_SIZE("notifications.max_data_bytes", notifications.max_data_bytes, 8192, 64, 1048576),
    K_BOOL("ratelimit.enabled", ratelimit.enabled, true),
    K_SIZE("ratelimit.max_keys", ratelimit.max_keys, 100000, 1000, 50000000),
    K_STR("ratelimit.redis_down", ratelimit.redis_down, "local", REDIS_DOWN, NULL),
    K_STR("ratelimit.login_ip", ratelimit.login_ip, "300/5min burst 30", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.login_account", ratelimit.login_account, "100/hour burst 10", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.login_ip_account", ratelimit.login_ip_account, "10/min burst 5", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.register_ip", ratelimit.register_ip, "30/5min burst 10", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.refresh_session", ratelimit.refresh_session, "30/min burst 10", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.refresh_ip", ratelimit.refresh_ip, "600/min burst 100", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.password_user", ratelimit.password_user, "10/15min burst 5", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.publish", ratelimit.publish, "600/min burst 100", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.stream_connect_user", ratelimit.stream_connect_user, "60/min burst 20", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.stream_connect_ip", ratelimit.stream_connect_ip, "300/min burst 60", NULL,
          hd__config_check_rate_rule),
    K_STR("ratelimit.authenticated", ratelimit.authenticated, "off", NULL,
          hd__config_check_rate_rule),
};

/* Short environment names, applied after the long ones so they win. */
static const struct {
    const char *env;
    const char *path;
} SHORT_NAMES[] = {
    {"HERALD_LISTEN", "server.listen"},
    {"HERALD_DATABASE_URL", "store.database_url"},
    {"HERALD_REDIS_URL", "redis.url"},
    {"HERALD_JWT_SECRET", "jwt.secret"},
};

/* ---- string lists ------------------------------------------------------ */

void hd_strlist_addf(struct hd_strlist *list, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    HD_ASSERT(n >= 0);

    char *line = hd_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(line, (size_t)n + 1, fmt, ap);
    va_end(ap);

    if (list->len == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 8;
        list->items = hd_realloc(list->items, list->cap * sizeof(*list->items));
    }
    list->items[list->len++] = line;
}

void hd_strlist_clear(struct hd_strlist *list)
{
    for (size_t i = 0; i < list->len; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->len = list->cap = 0;
}

/* ---- storing values ---------------------------------------------------- */

static void *slot(struct hd_config *cfg, size_t off)
{
    return (char *)cfg + off;
}

void hd__config_free_string(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

static void free_strings(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hd__config_free_string(items[i]);
    free(items);
}

/* Adds "PATH: [SOURCE: ]message". @src is NULL for the file, else the
 * environment variable or "--listen". Never pass a string value here. */
static void __attribute__((format(printf, 4, 5)))
key_problem(struct hd__config_loader *ld, const char *path, const char *src, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hd_strlist_addf(ld->problems, "%s: %s%s%s", path, src ? src : "", src ? ": " : "", msg);
}

static void store_bool(struct hd__config_loader *ld, const struct key_spec *k, bool v)
{
    *(bool *)slot(ld->cfg, k->off) = v;
}

static void store_number(struct hd__config_loader *ld, const struct key_spec *k, const char *src,
                         long long v)
{
    if (v < k->min || v > k->max) {
        key_problem(ld, k->path, src, "%lld is out of range (%lld to %lld)", v, k->min, k->max);
        return;
    }
    if (k->type == KT_INT)
        *(int *)slot(ld->cfg, k->off) = (int)v;
    else
        *(size_t *)slot(ld->cfg, k->off) = (size_t)v;
}

static void choices_problem(struct hd__config_loader *ld, const struct key_spec *k, const char *src)
{
    char list[128] = "";
    for (const char *const *c = k->choices; *c; c++) {
        strncat(list, c == k->choices ? "" : ", ", sizeof(list) - strlen(list) - 1);
        strncat(list, *c, sizeof(list) - strlen(list) - 1);
    }
    key_problem(ld, k->path, src, "must be one of %s", list);
}

static void store_string(struct hd__config_loader *ld, const struct key_spec *k, const char *src,
                         const char *v)
{
    if (k->choices) {
        const char *const *c = k->choices;
        while (*c && strcasecmp(*c, v) != 0)
            c++;
        if (!*c) {
            choices_problem(ld, k, src);
            return;
        }
        v = *c;
    }
    const char *reason = k->check ? k->check(v) : NULL;
    if (reason) {
        key_problem(ld, k->path, src, "%s", reason);
        return;
    }
    char **field = slot(ld->cfg, k->off);
    hd__config_free_string(*field);
    *field = hd_strdup(v);
}

/* Takes ownership of @items (n of them) whether or not they are stored. */
static void store_strings(struct hd__config_loader *ld, const struct key_spec *k, const char *src,
                          char **items, size_t n)
{
    bool ok = true;
    for (size_t i = 0; k->check && i < n; i++) {
        const char *reason = k->check(items[i]);
        if (reason) {
            char path[128];
            snprintf(path, sizeof(path), "%s[%zu]", k->path, i);
            key_problem(ld, path, src, "%s", reason);
            ok = false;
        }
    }
    if (!ok) {
        free_strings(items, n);
        return;
    }
    char ***field = slot(ld->cfg, k->off);
    size_t *count = slot(ld->cfg, k->off2);
    free_strings(*field, *count);
    *field = n ? items : NULL;
    *count = n;
    if (!n)
        free(items);
}

static void store_listen(struct hd__config_loader *ld, const struct key_spec *k, const char *src,
                         const char *v)
{
    char *host;
    int port;
    const char *reason = hd__config_parse_listen(v, &host, &port);
    if (reason) {
        key_problem(ld, k->path, src, "%s", reason);
        return;
    }
    char **field = slot(ld->cfg, k->off);
    hd__config_free_string(*field);
    *field = host;
    *(int *)slot(ld->cfg, k->off2) = port;
}

/* ---- values from text (defaults and the environment) ------------------- */

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < HD_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, true;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, true;
    }
    return false;
}

static bool parse_integer(const char *s, long long *out)
{
    if (!(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return false;
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno == 0 && *end == '\0';
}

/* Splits "a, b,,c" into owned, trimmed, non-empty items. */
static char **split_commas(const char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **items = hd_calloc(cap, sizeof(*items));
    *n = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        const char *a = s, *b = s + len;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a)
            items[(*n)++] = hd_strndup(a, (size_t)(b - a));
        s += len + (s[len] == ',');
    }
    return items;
}

static void apply_text(struct hd__config_loader *ld, const struct key_spec *k, const char *src,
                       const char *text)
{
    bool b;
    long long v;
    size_t n;
    switch (k->type) {
    case KT_BOOL:
        if (parse_bool(text, &b))
            store_bool(ld, k, b);
        else
            key_problem(ld, k->path, src, "expected true or false");
        break;
    case KT_INT:
    case KT_SIZE:
        if (parse_integer(text, &v))
            store_number(ld, k, src, v);
        else
            key_problem(ld, k->path, src, "expected an integer");
        break;
    case KT_STRING:
        store_string(ld, k, src, text);
        break;
    case KT_STRINGS: {
        char **items = split_commas(text, &n);
        store_strings(ld, k, src, items, n);
        break;
    }
    case KT_LISTEN:
        store_listen(ld, k, src, text);
        break;
    }
}

static void apply_defaults(struct hd__config_loader *ld)
{
    for (size_t i = 0; i < HD_ARRAY_LEN(KEYS); i++) {
        const struct key_spec *k = &KEYS[i];
        size_t before = ld->problems->len;
        if (k->type == KT_BOOL)
            store_bool(ld, k, k->def);
        else if (k->type == KT_INT || k->type == KT_SIZE)
            store_number(ld, k, NULL, k->def);
        else
            apply_text(ld, k, NULL, k->def_str ? k->def_str : "");
        HD_ASSERT(ld->problems->len == before); /* the table's defaults are valid */
    }
}

/* ---- values from the JSON file ----------------------------------------- */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* A JSON string usable as a C string: no embedded NUL. */
static bool json_cstring(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static void apply_json_array(struct hd__config_loader *ld, const struct key_spec *k, json_t *arr)
{
    size_t n = json_array_size(arr), i;
    char **items = hd_calloc(n, sizeof(*items));
    json_t *item;
    json_array_foreach(arr, i, item)
    {
        if (!json_cstring(item)) {
            char path[128];
            snprintf(path, sizeof(path), "%s[%zu]", k->path, i);
            if (json_is_string(item))
                key_problem(ld, path, NULL, "must not contain a NUL byte");
            else
                key_problem(ld, path, NULL, "expected a string, got %s", json_kind(item));
            free_strings(items, i);
            return;
        }
        items[i] = hd_strdup(json_string_value(item));
    }
    store_strings(ld, k, NULL, items, n);
}

static void apply_json(struct hd__config_loader *ld, const struct key_spec *k, json_t *v)
{
    const char *want = NULL;
    if (k->type == KT_BOOL && json_is_boolean(v))
        store_bool(ld, k, json_is_true(v));
    else if ((k->type == KT_INT || k->type == KT_SIZE) && json_is_integer(v))
        store_number(ld, k, NULL, json_integer_value(v));
    else if (k->type == KT_STRING && json_cstring(v))
        store_string(ld, k, NULL, json_string_value(v));
    else if (k->type == KT_LISTEN && json_cstring(v))
        store_listen(ld, k, NULL, json_string_value(v));
    else if (k->type == KT_STRINGS && json_is_array(v))
        apply_json_array(ld, k, v);
    else if (json_is_string(v) && (k->type == KT_STRING || k->type == KT_LISTEN))
        key_problem(ld, k->path, NULL, "must not contain a NUL byte");
    else
        want = k->type == KT_BOOL                        ? "true or false"
               : k->type == KT_INT || k->type == KT_SIZE ? "an integer"
               : k->type == KT_STRING                    ? "a string"
               : k->type == KT_LISTEN                    ? "a \"host:port\" string"
                                                         : "an array of strings";
    if (want)
        key_problem(ld, k->path, NULL, "expected %s, got %s", want, json_kind(v));
}

static const struct key_spec *find_key(const char *path)
{
    for (size_t i = 0; i < HD_ARRAY_LEN(KEYS); i++) {
        if (strcmp(KEYS[i].path, path) == 0)
            return &KEYS[i];
    }
    return NULL;
}

/* True when @path names a section ("server") rather than a key. */
static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < HD_ARRAY_LEN(KEYS); i++) {
        if (strncmp(KEYS[i].path, path, n) == 0 && KEYS[i].path[n] == '.')
            return true;
    }
    return false;
}

/* Edit distance, for "did you mean"; paths are short, so O(n*m) is fine. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t lb = strlen(b), row[128];
    if (lb >= HD_ARRAY_LEN(row) || strlen(a) >= HD_ARRAY_LEN(row))
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void unknown_key(struct hd__config_loader *ld, const char *path)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest only near misses */
    for (size_t i = 0; i < HD_ARRAY_LEN(KEYS); i++) {
        size_t d = edit_distance(path, KEYS[i].path);
        if (d < best_d)
            best = KEYS[i].path, best_d = d;
    }
    if (best)
        key_problem(ld, path, NULL, "unknown key (did you mean %s?)", best);
    else
        key_problem(ld, path, NULL, "unknown key");
}

static void apply_object(struct hd__config_loader *ld, const char *prefix, json_t *obj)
{
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        char path[256];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", name);
        const struct key_spec *k = find_key(path);
        if (k)
            apply_json(ld, k, v);
        else if (is_section(path) && json_is_object(v))
            apply_object(ld, path, v);
        else if (is_section(path))
            key_problem(ld, path, NULL, "expected an object, got %s", json_kind(v));
        else
            unknown_key(ld, path);
    }
}

/* jansson quotes the text near a syntax error, which may be a secret. */
static void file_problem(struct hd__config_loader *ld, const char *path, const json_error_t *err)
{
    char text[JSON_ERROR_TEXT_LENGTH];
    snprintf(text, sizeof(text), "%s", err->text);
    char *near = strstr(text, " near '");
    if (near)
        *near = '\0';
    if (err->line > 0)
        hd_strlist_addf(ld->problems, "config: %s:%d:%d: %s", path, err->line, err->column, text);
    else
        hd_strlist_addf(ld->problems, "config: %s", text);
}

static void apply_file(struct hd__config_loader *ld, const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        file_problem(ld, path, &err);
        return;
    }
    if (json_is_object(root))
        apply_object(ld, "", root);
    else
        hd_strlist_addf(ld->problems, "config: %s: the top level must be a JSON object", path);
    json_decref(root);
}

/* ---- values from the environment and the command line ------------------ */

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++) {
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    }
    return NULL;
}

static void env_name(const char *path, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "HERALD_%s", path);
    HD_ASSERT(n < cap);
    for (char *p = out; *p; p++)
        *p = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
}

static void apply_env(struct hd__config_loader *ld, char *const *envp)
{
    for (size_t i = 0; i < HD_ARRAY_LEN(KEYS); i++) {
        char name[128];
        env_name(KEYS[i].path, name, sizeof(name));
        const char *v = env_get(envp, name);
        if (v)
            apply_text(ld, &KEYS[i], name, v);
    }
    for (size_t i = 0; i < HD_ARRAY_LEN(SHORT_NAMES); i++) {
        const char *v = env_get(envp, SHORT_NAMES[i].env);
        if (v)
            apply_text(ld, find_key(SHORT_NAMES[i].path), SHORT_NAMES[i].env, v);
    }
}

/* ---- public ------------------------------------------------------------ */

/* "0 = number of cores" keys, resolved once at load. */
static void resolve_io_threads(struct hd_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int cores = n < 1 ? 1 : n > 256 ? 256 : (int)n;
    if (cfg->server.io_threads == 0)
        cfg->server.io_threads = cores;
    if (cfg->auth.hash_workers == 0)
        cfg->auth.hash_workers = cores > 64 ? 64 : cores;
}

struct hd_config *hd_config_load(const char *path, char *const *envp, const char *listen, int flags,
                                 struct hd_strlist *problems, struct hd_strlist *warnings)
{
    struct hd_strlist own_problems = {0}, own_warnings = {0};
    struct hd__config_loader ld = {
        .cfg = hd_calloc(1, sizeof(struct hd_config)),
        .problems = problems ? problems : &own_problems,
        .warnings = warnings ? warnings : &own_warnings,
        .flags = flags,
    };
    ld.problems_before = ld.problems->len;

    apply_defaults(&ld);
    if (path)
        apply_file(&ld, path);
    apply_env(&ld, envp);
    if (listen)
        apply_text(&ld, find_key("server.listen"), "--listen", listen);
    hd__config_check(&ld);
    resolve_io_threads(ld.cfg);

    bool failed = ld.problems->len > ld.problems_before;
    hd_strlist_clear(&own_problems);
    hd_strlist_clear(&own_warnings);
    if (failed) {
        hd_config_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

void hd_config_free(struct hd_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < HD_ARRAY_LEN(KEYS); i++) {
        const struct key_spec *k = &KEYS[i];
        if (k->type == KT_STRING || k->type == KT_LISTEN)
            hd__config_free_string(*(char **)slot(cfg, k->off));
        else if (k->type == KT_STRINGS)
            free_strings(*(char ***)slot(cfg, k->off), *(size_t *)slot(cfg, k->off2));
    }
    free(cfg);
}

const char *hd__config_key_path(size_t i)
{
    return i < HD_ARRAY_LEN(KEYS) ? KEYS[i].path : NULL;
}

bool hd_config_origin_allowed(const struct hd_config *cfg, const char *origin, size_t len)
{
    if (!origin)
        return false;
    for (size_t i = 0; i < cfg->cors.n_allowed_origins; i++) {
        const char *allowed = cfg->cors.allowed_origins[i];
        if (allowed[0] == '*' && allowed[1] == '\0')
            return true;
        if (strlen(allowed) == len && memcmp(allowed, origin, len) == 0)
            return true;
    }
    return false;
}
