/* Client address: trusted-proxy CIDR matching and the right-to-left
 * X-Forwarded-For walk. See include/herald/client_ip.h. */
#include "herald/client_ip.h"

#include "herald/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* One address, IPv4-mapped IPv6 already folded to IPv4. */
struct ip {
    uint8_t family;
    uint8_t b[16];
};

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void ip_from_v6(struct ip *ip, const uint8_t b[16])
{
    if (memcmp(b, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
        ip->family = AF_INET;
        memcpy(ip->b, b + 12, 4);
    } else {
        ip->family = AF_INET6;
        memcpy(ip->b, b, 16);
    }
}

static bool ip_from_sockaddr(struct ip *ip, const struct sockaddr *sa)
{
    memset(ip, 0, sizeof(*ip));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ip->family = AF_INET;
        memcpy(ip->b, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ip_from_v6(ip, in6->sin6_addr.s6_addr);
        return true;
    }
    return false;
}

/* Parses exactly @len bytes of @s as a bare IPv4 or IPv6 address. */
static bool ip_parse(struct ip *ip, const char *s, size_t len)
{
    char tmp[HD_CLIENT_IP_MAX];
    uint8_t b[16];
    if (len == 0 || len >= sizeof(tmp))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(AF_INET, tmp, b) == 1) {
        ip->family = AF_INET;
        memcpy(ip->b, b, 4);
        return true;
    }
    if (inet_pton(AF_INET6, tmp, b) == 1) {
        ip_from_v6(ip, b);
        return true;
    }
    return false;
}

static bool all_digits(const char *s, size_t len, size_t max_len)
{
    if (len == 0 || len > max_len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* One X-Forwarded-For entry: "a.b.c.d", "v6", "[v6]", "a.b.c.d:port", "[v6]:port". */
static bool xff_entry_parse(struct ip *ip, const char *s, size_t len)
{
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return false;
        size_t inner = (size_t)(close - s) - 1, rest = len - inner - 2;
        if (rest > 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1, 5)))
            return false;
        /* Brackets hold IPv6 text only ("[::ffff:1.2.3.4]" is fine, "[1.2.3.4]" is not). */
        return memchr(s + 1, ':', inner) && ip_parse(ip, s + 1, inner);
    }
    const char *colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - s) - 1)) {
        /* Exactly one colon: only "IPv4:port" has that shape. */
        size_t host = (size_t)(colon - s);
        return all_digits(colon + 1, len - host - 1, 5) && ip_parse(ip, s, host) &&
               ip->family == AF_INET;
    }
    return ip_parse(ip, s, len);
}

static bool cidr_match(const struct hd__cidr *c, const struct ip *ip)
{
    if (c->family != ip->family)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, ip->b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip->b[full] & mask) == c->addr[full];
}

static bool set_contains_ip(const struct hd_cidr_set *s, const struct ip *ip)
{
    for (size_t i = 0; i < s->_n; i++)
        if (cidr_match(&s->_items[i], ip))
            return true;
    return false;
}

bool hd_cidr_set_contains(const struct hd_cidr_set *s, const struct sockaddr *addr)
{
    struct ip ip;
    return ip_from_sockaddr(&ip, addr) && set_contains_ip(s, &ip);
}

/* Parses "addr" or "addr/prefix" into @c. */
static int cidr_parse(struct hd__cidr *c, const char *s)
{
    uint8_t b[16];
    char tmp[HD_CLIENT_IP_MAX];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, alen);
    tmp[alen] = '\0';
    memset(c, 0, sizeof(*c));
    unsigned max;
    if (inet_pton(AF_INET, tmp, b) == 1) {
        c->family = AF_INET;
        memcpy(c->addr, b, 4);
        max = 32;
    } else if (inet_pton(AF_INET6, tmp, b) == 1) {
        c->family = AF_INET6;
        memcpy(c->addr, b, 16);
        max = 128;
    } else {
        return -EINVAL;
    }
    unsigned prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        if (!all_digits(p, plen, 3) || (plen > 1 && p[0] == '0'))
            return -EINVAL;
        prefix = (unsigned)strtoul(p, NULL, 10);
        if (prefix > max)
            return -EINVAL;
    }
    if (c->family == AF_INET6 && prefix >= 96 &&
        memcmp(c->addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->family = AF_INET;
        prefix -= 96;
    }
    c->prefix = (uint8_t)prefix;
    /* Clear host bits so cidr_match can compare bytes directly. */
    unsigned full = prefix / 8, rest = prefix % 8;
    if (full < 16) {
        if (rest)
            c->addr[full++] &= (uint8_t)(0xff << (8 - rest));
        memset(c->addr + full, 0, 16 - full);
    }
    return 0;
}

int hd_cidr_set_init(struct hd_cidr_set *s, char *const *items, size_t n)
{
    s->_items = NULL;
    s->_n = 0;
    if (n == 0)
        return 0;
    struct hd__cidr *v = hd_calloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        if (!items[i] || cidr_parse(&v[i], items[i]) != 0) {
            free(v);
            return -EINVAL;
        }
    }
    s->_items = v;
    s->_n = n;
    return 0;
}

void hd_cidr_set_free(struct hd_cidr_set *s)
{
    free(s->_items);
    s->_items = NULL;
    s->_n = 0;
}

static int ip_format(const struct ip *ip, char *out, size_t cap)
{
    char tmp[HD_CLIENT_IP_MAX];
    if (!inet_ntop(ip->family, ip->b, tmp, sizeof(tmp)))
        return -EAFNOSUPPORT;
    size_t len = strlen(tmp);
    if (len + 1 > cap)
        return -ENOSPC;
    memcpy(out, tmp, len + 1);
    return (int)len;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Walks @xff right to left. @best starts as the (trusted) peer and ends as the client. */
static void xff_walk(const struct hd_cidr_set *trusted, const char *xff, size_t len,
                     struct ip *best)
{
    size_t end = len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && is_ows(xff[a]))
            a++;
        while (b > a && is_ows(xff[b - 1]))
            b--;
        end = start > 0 ? start - 1 : 0;
        if (a == b)
            continue; /* empty list element */
        struct ip ip;
        if (!xff_entry_parse(&ip, xff + a, b - a))
            return;
        *best = ip;
        if (!set_contains_ip(trusted, &ip))
            return;
    }
}

int hd_client_ip(const struct hd_cidr_set *trusted, const struct sockaddr *peer, const char *xff,
                 size_t xff_len, char *out, size_t cap)
{
    struct ip client;
    if (!ip_from_sockaddr(&client, peer))
        return -EAFNOSUPPORT;
    if (xff && xff_len > 0 && set_contains_ip(trusted, &client))
        xff_walk(trusted, xff, xff_len, &client);
    return ip_format(&client, out, cap);
}
