/* Trusted-proxy CIDR matching and the X-Forwarded-For walk (src/net/client_ip.c). */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "herald/client_ip.h"
#include "herald/core.h"

static struct sockaddr_storage sa(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(4242);
    } else {
        cr_assert_eq(inet_pton(AF_INET6, text, &in6->sin6_addr), 1, "bad test address %s", text);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(4242);
    }
    return ss;
}

static struct hd_cidr_set set_of(char *const *items, size_t n)
{
    struct hd_cidr_set s;
    cr_assert_eq(hd_cidr_set_init(&s, items, n), 0);
    return s;
}

static bool contains(const struct hd_cidr_set *s, const char *addr)
{
    struct sockaddr_storage ss = sa(addr);
    return hd_cidr_set_contains(s, (struct sockaddr *)&ss);
}

/* Client IP of a request from @peer carrying @xff (NULL: no header). */
static void expect_client(const struct hd_cidr_set *s, const char *peer, const char *xff,
                          const char *expect)
{
    struct sockaddr_storage ss = sa(peer);
    char out[HD_CLIENT_IP_MAX];
    int n = hd_client_ip(s, (struct sockaddr *)&ss, xff, xff ? strlen(xff) : 0, out, sizeof(out));
    cr_assert_geq(n, 0, "peer %s xff \"%s\": error %d", peer, xff ? xff : "(none)", n);
    cr_expect_eq((size_t)n, strlen(out));
    cr_expect_str_eq(out, expect, "peer %s xff \"%s\"", peer, xff ? xff : "(none)");
}

static char *proxies[] = {"10.0.0.0/8", "127.0.0.1", "::1/128", "fd00::/8"};

Test(client_ip, untrusted_peer_ignores_xff)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    expect_client(&s, "203.0.113.9", "1.1.1.1", "203.0.113.9");
    expect_client(&s, "203.0.113.9", "1.1.1.1, 10.0.0.1", "203.0.113.9");
    expect_client(&s, "2001:db8::9", "1.1.1.1", "2001:db8::9");
    /* A client rotating its XFF stays on one key. */
    char xff[32];
    for (int i = 0; i < 50; i++) {
        snprintf(xff, sizeof(xff), "198.51.100.%d", i);
        expect_client(&s, "203.0.113.9", xff, "203.0.113.9");
    }
    hd_cidr_set_free(&s);
}

Test(client_ip, trusted_peer_uses_rightmost_untrusted_entry)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    expect_client(&s, "10.1.2.3", "203.0.113.7", "203.0.113.7");
    /* The client may prepend anything; only what our proxy appended counts. */
    expect_client(&s, "10.1.2.3", "6.6.6.6, 203.0.113.7", "203.0.113.7");
    expect_client(&s, "127.0.0.1", "6.6.6.6,203.0.113.7", "203.0.113.7");
    expect_client(&s, "::1", "203.0.113.7", "203.0.113.7");
    expect_client(&s, "10.1.2.3", "2001:db8::7", "2001:db8::7");
    hd_cidr_set_free(&s);
}

Test(client_ip, chain_of_trusted_hops_is_skipped)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    expect_client(&s, "10.0.0.1", "6.6.6.6, 203.0.113.7, 10.9.9.9, fd00::5, 127.0.0.1",
                  "203.0.113.7");
    /* Several header lines joined with ",". */
    expect_client(&s, "10.0.0.1", "6.6.6.6, 203.0.113.7,10.9.9.9", "203.0.113.7");
    hd_cidr_set_free(&s);
}

Test(client_ip, all_trusted_gives_leftmost)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    expect_client(&s, "10.0.0.1", "10.0.0.2, 10.0.0.3", "10.0.0.2");
    expect_client(&s, "10.0.0.1", "fd00::1", "fd00::1");
    hd_cidr_set_free(&s);
}

Test(client_ip, empty_or_missing_xff_gives_peer)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    expect_client(&s, "10.0.0.1", NULL, "10.0.0.1");
    expect_client(&s, "10.0.0.1", "", "10.0.0.1");
    expect_client(&s, "10.0.0.1", " , ,", "10.0.0.1");
    /* Empty list elements are skipped, not malformed. */
    expect_client(&s, "10.0.0.1", "203.0.113.7, ,", "203.0.113.7");
    hd_cidr_set_free(&s);
}

Test(client_ip, malformed_entry_stops_the_walk)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    const char *bad[] = {
        "unknown",   "1.2.3",        "1.2.3.4.5",
        "1.2.3.4 5", "_hidden",      "01.2.3.4",
        "1.2.3.4:",  "1.2.3.4:x",    "1.2.3.4:123456",
        "[1.2.3.4]", "[::1",         "[::1]x",
        "::1]",      "fe80::1%eth0", "2001:db8::1:80:zz",
        "300.1.1.1", "\"1.2.3.4\"",  "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa"};
    char xff[128];
    for (size_t i = 0; i < HD_ARRAY_LEN(bad); i++) {
        /* Garbage right after the trusted peer: the peer is the client. */
        snprintf(xff, sizeof(xff), "6.6.6.6, %s", bad[i]);
        expect_client(&s, "10.0.0.1", xff, "10.0.0.1");
        /* Garbage behind a trusted hop: the last good (trusted) address. */
        snprintf(xff, sizeof(xff), "6.6.6.6, %s, 10.0.0.9", bad[i]);
        expect_client(&s, "10.0.0.1", xff, "10.0.0.9");
    }
    /* Garbage to the left of the client does not matter. */
    expect_client(&s, "10.0.0.1", "unknown, 203.0.113.7", "203.0.113.7");
    hd_cidr_set_free(&s);
}

Test(client_ip, port_and_bracket_forms)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    expect_client(&s, "10.0.0.1", "203.0.113.7:51234", "203.0.113.7");
    expect_client(&s, "10.0.0.1", "[2001:db8::7]:443", "2001:db8::7");
    expect_client(&s, "10.0.0.1", "[2001:db8::7]", "2001:db8::7");
    expect_client(&s, "10.0.0.1", "6.6.6.6, 10.0.0.2:80", "6.6.6.6");
    expect_client(&s, "10.0.0.1", "\t203.0.113.7 \t", "203.0.113.7");
    hd_cidr_set_free(&s);
}

Test(client_ip, ipv4_mapped_peers_and_entries)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    cr_expect(contains(&s, "::ffff:10.2.3.4"));
    cr_expect(contains(&s, "::ffff:127.0.0.1"));
    cr_expect_not(contains(&s, "::ffff:11.2.3.4"));
    /* A dual-stack listener's view of a proxy at 10.x is trusted... */
    expect_client(&s, "::ffff:10.2.3.4", "203.0.113.7", "203.0.113.7");
    /* ...and mapped addresses print in IPv4 form (one key per client). */
    expect_client(&s, "::ffff:203.0.113.9", "1.1.1.1", "203.0.113.9");
    expect_client(&s, "10.0.0.1", "::ffff:203.0.113.7", "203.0.113.7");
    expect_client(&s, "10.0.0.1", "[::ffff:203.0.113.7]:80", "203.0.113.7");
    expect_client(&s, "10.0.0.1", "1.1.1.1, ::ffff:10.0.0.3", "1.1.1.1");
    hd_cidr_set_free(&s);

    char *mapped[] = {"::ffff:192.168.0.0/112"};
    s = set_of(mapped, 1);
    cr_expect(contains(&s, "192.168.44.1"));
    cr_expect(contains(&s, "::ffff:192.168.44.1"));
    cr_expect_not(contains(&s, "192.169.0.1"));
    hd_cidr_set_free(&s);
}

Test(client_ip, ipv6_entries_do_not_match_ipv4)
{
    char *all6[] = {"::/0"};
    struct hd_cidr_set s = set_of(all6, 1);
    cr_expect(contains(&s, "2001:db8::1"));
    cr_expect_not(contains(&s, "1.2.3.4"));
    cr_expect_not(contains(&s, "::ffff:1.2.3.4"));
    hd_cidr_set_free(&s);
}

Test(cidr, prefix_edges)
{
    char *zero[] = {"0.0.0.0/0"};
    struct hd_cidr_set s = set_of(zero, 1);
    cr_expect(contains(&s, "0.0.0.0"));
    cr_expect(contains(&s, "255.255.255.255"));
    cr_expect_not(contains(&s, "::1"));
    hd_cidr_set_free(&s);

    char *p31[] = {"192.0.2.4/31"};
    s = set_of(p31, 1);
    cr_expect(contains(&s, "192.0.2.4"));
    cr_expect(contains(&s, "192.0.2.5"));
    cr_expect_not(contains(&s, "192.0.2.6"));
    cr_expect_not(contains(&s, "192.0.2.3"));
    hd_cidr_set_free(&s);

    char *p32[] = {"192.0.2.4/32", "198.51.100.1"};
    s = set_of(p32, 2);
    cr_expect(contains(&s, "192.0.2.4"));
    cr_expect_not(contains(&s, "192.0.2.5"));
    cr_expect(contains(&s, "198.51.100.1"));
    cr_expect_not(contains(&s, "198.51.100.0"));
    hd_cidr_set_free(&s);

    char *p127[] = {"2001:db8::/127"};
    s = set_of(p127, 1);
    cr_expect(contains(&s, "2001:db8::"));
    cr_expect(contains(&s, "2001:db8::1"));
    cr_expect_not(contains(&s, "2001:db8::2"));
    hd_cidr_set_free(&s);

    char *p128[] = {"2001:db8::1/128", "2001:db8::9"};
    s = set_of(p128, 2);
    cr_expect(contains(&s, "2001:db8::1"));
    cr_expect_not(contains(&s, "2001:db8::"));
    cr_expect(contains(&s, "2001:db8::9"));
    cr_expect_not(contains(&s, "2001:db8::8"));
    hd_cidr_set_free(&s);

    char *six0[] = {"::/0", "fd00::/8", "10.0.0.0/12"};
    s = set_of(six0, 3);
    cr_expect(contains(&s, "ffff::1"));
    cr_expect(contains(&s, "10.15.255.255"));
    cr_expect_not(contains(&s, "10.16.0.0"));
    hd_cidr_set_free(&s);
}

Test(cidr, host_bits_are_cleared)
{
    char *items[] = {"10.1.2.3/8", "fd12:3456::1/16"};
    struct hd_cidr_set s = set_of(items, 2);
    cr_expect(contains(&s, "10.200.0.1"));
    cr_expect(contains(&s, "fd12::77"));
    cr_expect_not(contains(&s, "fd13::77"));
    hd_cidr_set_free(&s);
}

Test(cidr, bad_strings_are_einval)
{
    const char *bad[] = {"",
                         "/8",
                         "10.0.0.0/",
                         "10.0.0.0/33",
                         "10.0.0.0/-1",
                         "10.0.0.0/+8",
                         "10.0.0.0/08",
                         "10.0.0.0/8/8",
                         "10.0.0/8",
                         "10.0.0.0 /8",
                         " 10.0.0.0/8",
                         "10.0.0.0/8 ",
                         "::1/129",
                         "::1/1000",
                         "fe80::1%lo/64",
                         "localhost",
                         "10.0.0.0/a",
                         "1.2.3.4:80",
                         "[::1]/128",
                         "::1/0x10"};
    for (size_t i = 0; i < HD_ARRAY_LEN(bad); i++) {
        char *items[] = {"127.0.0.1/32", (char *)bad[i]};
        struct hd_cidr_set s;
        cr_expect_eq(hd_cidr_set_init(&s, items, 2), -EINVAL, "\"%s\" accepted", bad[i]);
        cr_expect_eq(s._n, 0);
        hd_cidr_set_free(&s); /* safe on a failed set */
    }
    char *null_item[] = {NULL};
    struct hd_cidr_set s;
    cr_expect_eq(hd_cidr_set_init(&s, null_item, 1), -EINVAL);
}

Test(cidr, empty_set_trusts_nobody)
{
    struct hd_cidr_set s;
    cr_assert_eq(hd_cidr_set_init(&s, NULL, 0), 0);
    cr_expect_not(contains(&s, "127.0.0.1"));
    expect_client(&s, "127.0.0.1", "1.1.1.1", "127.0.0.1");
    hd_cidr_set_free(&s);
    struct hd_cidr_set z = {0};
    cr_expect_not(contains(&z, "::1"));
}

Test(client_ip, small_buffer_and_other_families)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    struct sockaddr_storage ss = sa("203.0.113.9");
    char out[HD_CLIENT_IP_MAX];
    cr_expect_eq(hd_client_ip(&s, (struct sockaddr *)&ss, NULL, 0, out, 11), -ENOSPC);
    cr_expect_eq(hd_client_ip(&s, (struct sockaddr *)&ss, NULL, 0, out, 12), 11);
    cr_expect_str_eq(out, "203.0.113.9");
    ss = sa("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    cr_expect_eq(hd_client_ip(&s, (struct sockaddr *)&ss, NULL, 0, out, sizeof(out)), 39);
    struct sockaddr un = {.sa_family = AF_UNIX};
    cr_expect_eq(hd_client_ip(&s, &un, NULL, 0, out, sizeof(out)), -EAFNOSUPPORT);
    cr_expect_not(hd_cidr_set_contains(&s, &un));
    hd_cidr_set_free(&s);
}

Test(client_ip, long_xff_is_linear_and_safe)
{
    struct hd_cidr_set s = set_of(proxies, HD_ARRAY_LEN(proxies));
    static char xff[200000];
    size_t n = 0;
    n += (size_t)snprintf(xff + n, sizeof(xff) - n, "203.0.113.7");
    while (n + 16 < sizeof(xff))
        n += (size_t)snprintf(xff + n, sizeof(xff) - n, ", 10.1.1.1");
    expect_client(&s, "10.0.0.1", xff, "203.0.113.7");
    hd_cidr_set_free(&s);
}
