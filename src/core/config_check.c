/* Configuration checks: the shape of single values (origins, URLs, CIDRs,
 * host:port), the JWT secret (read from jwt.secret_file, generated in dev
 * mode) and the safety checks that refuse start-up. Problems name the key and
 * never quote a secret. */
#include "herald/config.h"
#include "herald/core.h"
#include "herald/gcra.h"
#include "core/config_internal.h"
#include "core/embedded.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MIN_BYTES 32
#define SECRET_FILE_MAX  4096
#define SECRET_GEN_BYTES 48
#define EXAMPLE_CONFIG   "configs/herald.example.json"

/* ---- single values ----------------------------------------------------- */

static bool is_ipv4(const char *s, size_t n)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, &a) == 1;
}

static bool is_ipv6(const char *s, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

/* Parses the decimal port at @s (up to the NUL); -1 when it is not 0..65535. */
static int parse_port(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return -1;
    long v = strtol(s, NULL, 10);
    return v <= 65535 ? (int)v : -1;
}

/* An IPv4 literal, or a DNS name (letters, digits, dots, hyphens). */
static const char *check_host(const char *h, size_t n, bool lowercase)
{
    if (n == 0)
        return "the host is empty";
    if (strspn(h, "0123456789.") >= n)
        return is_ipv4(h, n) ? NULL : "the host is not a valid IPv4 address";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (lowercase && isupper(c))
            return "the host must be lower case (browsers send origins in lower case)";
        if (!isalnum(c) && c != '.' && c != '-')
            return "the host must be an IPv4 address, a host name or [IPv6]";
    }
    return NULL;
}

const char *hd__config_parse_listen(const char *text, char **host, int *port)
{
    const char *h = text, *colon;
    size_t n;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return "expected [IPv6]:PORT";
        h = text + 1;
        n = (size_t)(close - h);
        colon = close + 1;
        if (!is_ipv6(h, n))
            return "the host is not a valid IPv6 address";
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return "expected HOST:PORT";
        n = (size_t)(colon - text);
        if (memchr(text, ':', n))
            return "an IPv6 host needs brackets, as in [::1]:8080";
        const char *reason = check_host(h, n, false);
        if (reason)
            return reason;
    }
    int p = parse_port(colon + 1);
    if (p < 0)
        return "the port must be a number from 0 to 65535";
    *host = hd_strndup(h, n);
    *port = p;
    return NULL;
}

/* Browsers send an origin as scheme://host[:port], lower case, without the
 * scheme's default port; anything else here could never match. */
const char *hd__config_check_origin(const char *v)
{
    static const char *const shape = "must be \"*\" or scheme://host[:port]";
    if (strcmp(v, "*") == 0)
        return NULL;
    size_t scheme = strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789+.-");
    if (scheme == 0 || !islower((unsigned char)v[0]) || strncmp(v + scheme, "://", 3) != 0)
        return shape;
    const char *h = v + scheme + 3, *end;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end || !is_ipv6(h + 1, (size_t)(end - h - 1)))
            return shape;
        end++;
    } else {
        end = h + strcspn(h, ":/?#");
        const char *reason = check_host(h, (size_t)(end - h), true);
        if (reason)
            return reason;
    }
    if (*end == ':') {
        char port[8] = "";
        size_t n = strspn(end + 1, "0123456789");
        if (n > 0 && n < sizeof(port))
            memcpy(port, end + 1, n);
        if (parse_port(port) <= 0)
            return "the port must be a number from 1 to 65535";
        bool http80 = scheme == 4 && strncmp(v, "http", 4) == 0 && strcmp(port, "80") == 0;
        bool https443 = scheme == 5 && strncmp(v, "https", 5) == 0 && strcmp(port, "443") == 0;
        if (http80 || https443)
            return "must omit the scheme's default port, as browsers do";
        end += 1 + n;
    }
    if (*end == '/' || *end == '?' || *end == '#')
        return "must have no path, not even a trailing /";
    return *end == '\0' ? NULL : shape;
}

const char *hd__config_check_cidr(const char *v)
{
    static const char *const shape = "must be an IP address or CIDR, as in 10.0.0.0/8";
    size_t n = strcspn(v, "/");
    int max = is_ipv4(v, n) ? 32 : is_ipv6(v, n) ? 128 : -1;
    if (max < 0)
        return shape;
    if (v[n] == '\0')
        return NULL;
    const char *bits = v + n + 1;
    size_t bn = strlen(bits);
    if (bn == 0 || bn > 3 || strspn(bits, "0123456789") != bn || atoi(bits) > max)
        return shape;
    return NULL;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

const char *hd__config_check_database_url(const char *v)
{
    if (v[0] == '\0' || has_prefix(v, "postgres://") || has_prefix(v, "postgresql://"))
        return NULL;
    if (has_prefix(v, "sqlite:"))
        return v[7] ? NULL : "sqlite: needs a path, as in sqlite:var/herald.db";
    return "must be postgres://..., postgresql://..., sqlite:PATH or empty (embedded SQLite)";
}

const char *hd__config_check_redis_url(const char *v)
{
    if (v[0] == '\0' || has_prefix(v, "redis://"))
        return NULL;
    return "must be redis://... or empty (in-process only)";
}

const char *hd__config_check_rate_rule(const char *v)
{
    struct hd_gcra_rule rule;
    const char *why = NULL;
    return hd_gcra_rule_parse(v, &rule, &why) < 0 ? why : NULL;
}

const char *hd__config_check_nonempty(const char *v)
{
    return v[0] ? NULL : "must not be empty";
}

/* ---- the JWT secret from jwt.secret_file ------------------------------- */

/* Reads the secret at @path into *out (owned, trailing newlines removed).
 * Returns 0, -ENOENT (nothing reported: the caller decides), or another
 * -errno after adding a problem. */
static int read_secret_file(struct hd__config_loader *ld, const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err != ENOENT)
            hd_strlist_addf(ld->problems, "jwt.secret_file: cannot open %s: %s", path,
                            strerror(err));
        return -err;
    }
    int rc = -EINVAL;
    char buf[SECRET_FILE_MAX + 1];
    ssize_t n = 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        hd_strlist_addf(ld->problems, "jwt.secret_file: %s is not a regular file", path);
        goto out;
    }
    n = read(fd, buf, sizeof(buf));
    if (n < 0 || n > SECRET_FILE_MAX) {
        hd_strlist_addf(ld->problems, "jwt.secret_file: cannot read %s: %s", path,
                        n < 0 ? strerror(errno) : "larger than 4096 bytes");
        goto out;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (memchr(buf, '\0', (size_t)n)) {
        hd_strlist_addf(ld->problems, "jwt.secret_file: %s contains a NUL byte", path);
        goto out;
    }
    if (st.st_mode & 077)
        hd_strlist_addf(ld->warnings,
                        "jwt.secret_file: %s is readable by group or others (mode %04o); chmod 600",
                        path, (unsigned)(st.st_mode & 07777));
    *out = hd_strndup(buf, (size_t)n);
    rc = 0;
out:
    sodium_memzero(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* mkdir -p of the directory part of @path; new directories get mode 0700. */
static int make_parent_dirs(const char *path)
{
    char *dir = hd_strdup(path);
    int rc = 0;
    for (char *p = dir + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            rc = -errno;
        *p = '/';
    }
    free(dir);
    return rc;
}

/* Writes a fresh secret to a temporary file, then links it into place so a
 * concurrent reader never sees a half-written file and a concurrent writer
 * loses cleanly (EEXIST: the caller reads the winner's). */
static int write_new_secret(const char *path)
{
    unsigned char raw[SECRET_GEN_BYTES];
    char
        text[sodium_base64_ENCODED_LEN(SECRET_GEN_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
             1];
    size_t tmp_len = strlen(path) + sizeof(".XXXXXX");
    char *tmp = hd_malloc(tmp_len);
    snprintf(tmp, tmp_len, "%s.XXXXXX", path);
    int fd = -1, rc = hd_random_bytes(raw, sizeof(raw));
    if (rc != 0)
        goto out;
    sodium_bin2base64(text, sizeof(text) - 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    strcat(text, "\n");
    size_t len = strlen(text);
    fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    errno = 0;
    if (fchmod(fd, 0600) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
        rc = errno ? -errno : -EIO;
    else if (link(tmp, path) != 0)
        rc = -errno;
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(text, sizeof(text));
    free(tmp);
    return rc;
}

static void generate_secret_file(struct hd__config_loader *ld, const char *path, char **out)
{
    int rc = make_parent_dirs(path);
    if (rc == 0)
        rc = write_new_secret(path);
    if (rc != 0 && rc != -EEXIST) {
        hd_strlist_addf(ld->problems, "jwt.secret_file: cannot create %s: %s", path, strerror(-rc));
        return;
    }
    if (read_secret_file(ld, path, out) == -ENOENT)
        hd_strlist_addf(ld->problems, "jwt.secret_file: %s vanished after creation", path);
}

static void resolve_secret(struct hd__config_loader *ld)
{
    struct hd_config *cfg = ld->cfg;
    const char *path = cfg->jwt.secret_file;
    if (cfg->jwt.secret[0] != '\0') {
        if (path[0] != '\0')
            hd_strlist_addf(ld->warnings, "jwt.secret_file: ignored because jwt.secret is set");
        return;
    }
    if (path[0] == '\0')
        return;
    char *secret = NULL;
    int rc = read_secret_file(ld, path, &secret);
    ld->secret_settled = rc != 0; /* a jwt.secret_file problem says enough */
    if (rc == -ENOENT && !cfg->dev_mode) {
        hd_strlist_addf(ld->problems, "jwt.secret_file: %s does not exist", path);
    } else if (rc == -ENOENT) {
        /* Create nothing for check-config, nor for a config that fails anyway. */
        bool quiet =
            (ld->flags & HD_CONFIG_NO_SIDE_EFFECTS) || ld->problems->len > ld->problems_before;
        if (!quiet)
            generate_secret_file(ld, path, &secret);
    }
    if (secret) {
        hd__config_free_string(cfg->jwt.secret);
        cfg->jwt.secret = secret;
        ld->secret_from = "jwt.secret_file";
    }
}

/* ---- safety checks ----------------------------------------------------- */

static bool in_json_strings(const json_t *j, const char *s)
{
    const char *key;
    const json_t *v;
    size_t i;
    switch (json_typeof(j)) {
    case JSON_STRING:
        return strcasecmp(json_string_value(j), s) == 0;
    case JSON_OBJECT:
        json_object_foreach((json_t *)j, key, v)
        {
            if (in_json_strings(v, s))
                return true;
        }
        return false;
    case JSON_ARRAY:
        json_array_foreach(j, i, v)
        {
            if (in_json_strings(v, s))
                return true;
        }
        return false;
    default:
        return false;
    }
}

static bool in_example_config(const char *secret)
{
    const struct hd_embedded_file *f = hd_embedded_find(EXAMPLE_CONFIG);
    HD_ASSERT(f); /* compiled in by CMakeLists.txt */
    json_t *root = json_loadb(f->data, f->len, 0, NULL);
    HD_ASSERT(root); /* tests load the same file */
    bool found = in_json_strings(root, secret);
    json_decref(root);
    return found;
}

/* Secrets copied from tutorials and placeholders people forget to replace. */
static bool is_well_known(const char *secret)
{
    static const char *const exact[] = {
        "secret",
        "changeme",
        "change-me",
        "your-256-bit-secret",
        "your-secret-key",
        "supersecret",
        "super-secret",
        "mysecret",
        "my-secret",
        "jwt-secret",
        "jwtsecret",
        "jwt_secret",
        "secretkey",
        "secret-key",
        "secret_key",
        "your_jwt_secret",
        "your-jwt-secret",
        "password",
        "default",
        "test",
        "your-256-bit-secret-your-256-bit-secret",
    };
    static const char *const contained[] = {"replace-me", "replace_me", "changeme", "change-me"};
    for (size_t i = 0; i < HD_ARRAY_LEN(exact); i++) {
        if (strcasecmp(secret, exact[i]) == 0)
            return true;
    }
    for (size_t i = 0; i < HD_ARRAY_LEN(contained); i++) {
        if (strcasestr(secret, contained[i]))
            return true;
    }
    return false;
}

static void check_secret(struct hd__config_loader *ld)
{
    const char *secret = ld->cfg->jwt.secret;
    const char *from = ld->secret_from ? " (read from jwt.secret_file)" : "";
    if (secret[0] == '\0' && ld->secret_settled)
        return;
    if (secret[0] == '\0')
        hd_strlist_addf(ld->problems,
                        "jwt.secret: missing (set HERALD_JWT_SECRET or jwt.secret_file)");
    else if (in_example_config(secret))
        hd_strlist_addf(ld->problems,
                        "jwt.secret: is a value from the example config%s; use at least 32 "
                        "random bytes, e.g. `openssl rand -base64 48`",
                        from);
    else if (is_well_known(secret))
        hd_strlist_addf(ld->problems,
                        "jwt.secret: is a well-known example secret%s; use at least 32 random "
                        "bytes, e.g. `openssl rand -base64 48`",
                        from);
    else if (strlen(secret) < SECRET_MIN_BYTES)
        hd_strlist_addf(ld->problems, "jwt.secret: shorter than %d bytes%s", SECRET_MIN_BYTES,
                        from);
}

static void check_cors(struct hd__config_loader *ld)
{
    const struct hd_config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->cors.n_allowed_origins; i++) {
        if (strcmp(cfg->cors.allowed_origins[i], "*") == 0 && cfg->cors.allow_credentials)
            hd_strlist_addf(ld->problems,
                            "cors.allowed_origins: \"*\" together with cors.allow_credentials "
                            "true lets any site act as the logged-in user; list the origins");
    }
}

static void check_cookie(struct hd__config_loader *ld)
{
    const struct hd_config *cfg = ld->cfg;
    if (!cfg->cookie.secure && !cfg->dev_mode)
        hd_strlist_addf(ld->problems, "cookie.secure: false is allowed only with dev_mode true");
    if (!cfg->cookie.secure && strcmp(cfg->cookie.same_site, "None") == 0)
        hd_strlist_addf(ld->problems,
                        "cookie.same_site: \"None\" needs cookie.secure true (browsers drop "
                        "such cookies)");
}

static void check_listen(struct hd__config_loader *ld)
{
    const char *host = ld->cfg->server.listen_host;
    struct in6_addr a6;
    if (strcmp(host, "0.0.0.0") == 0)
        hd_strlist_addf(ld->warnings,
                        "server.listen: binding 0.0.0.0 exposes herald on every interface");
    else if (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6))
        hd_strlist_addf(ld->warnings, "server.listen: binding [::] exposes herald on every "
                                      "interface");
}

void hd__config_check(struct hd__config_loader *ld)
{
    resolve_secret(ld);
    check_secret(ld);
    check_cors(ld);
    check_cookie(ld);
    check_listen(ld);
    if (ld->cfg->dev_mode)
        hd_strlist_addf(ld->warnings, "dev_mode: true; never use this in production");
}
