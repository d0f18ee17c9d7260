/* Which address a request is "from": the socket peer, or — only when the peer
 * is a trusted proxy (server.trusted_proxies) — the first untrusted hop of
 * X-Forwarded-For, read right to left. Rate-limit and session keys use it, so
 * a client that sets its own X-Forwarded-For from an untrusted address stays
 * in its peer's bucket.
 *
 * Thread: a hd_cidr_set is built once (config load) and then read-only; any
 * thread may call hd_cidr_set_contains and hd_client_ip on it concurrently. */
#ifndef HERALD_CLIENT_IP_H
#define HERALD_CLIENT_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/** Buffer size that always fits hd_client_ip's text plus its NUL (INET6_ADDRSTRLEN). */
#define HD_CLIENT_IP_MAX 46

struct hd__cidr {
    uint8_t addr[16]; /* network bytes, host bits cleared; IPv4 uses addr[0..3] */
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t prefix;   /* 0..32 or 0..128 */
};

/** A list of networks. Fields are private; zero-initialised is a valid empty set. */
struct hd_cidr_set {
    struct hd__cidr *_items;
    size_t _n;
};

/**
 * Parses @n entries of @items ("10.0.0.0/8", "::1/128", "fd00::/8"; a bare
 * address means /32 or /128) into @s. Host bits below the prefix are cleared
 * ("10.1.2.3/8" is 10.0.0.0/8). An IPv4-mapped IPv6 entry ("::ffff:10.0.0.0/104")
 * is stored as its IPv4 network. No whitespace, no zone ids ("fe80::1%eth0"),
 * no leading zeros or signs in the prefix.
 *
 * Returns 0, or -EINVAL when any entry is malformed; then @s is left empty and
 * nothing is allocated. @items is borrowed; nothing allocates after this call.
 * Call hd_cidr_set_free when done (also safe on an empty or failed set).
 */
int hd_cidr_set_init(struct hd_cidr_set *s, char *const *items, size_t n);

/** Frees what hd_cidr_set_init allocated and leaves @s empty. */
void hd_cidr_set_free(struct hd_cidr_set *s);

/**
 * True when @addr (AF_INET or AF_INET6; other families never match) lies in
 * one of the networks of @s. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what
 * a dual-stack listener reports for IPv4 peers) matches IPv4 entries.
 */
bool hd_cidr_set_contains(const struct hd_cidr_set *s, const struct sockaddr *addr);

/**
 * Writes the client address of a request to @out as NUL-terminated text:
 *
 * - the socket @peer, when the peer is not in @trusted: X-Forwarded-For is
 *   then ignored entirely;
 * - otherwise X-Forwarded-For (@xff, @xff_len bytes, may be NULL/0; several
 *   header lines joined with ",") is read right to left, skipping entries that
 *   are themselves in @trusted; the first untrusted entry is the client. If
 *   every entry is trusted, the leftmost is used. A malformed entry stops the
 *   walk and the last good address (or the peer) is used. Empty list elements
 *   (", ,") are skipped, as RFC 9110 section 5.6.1 asks.
 *
 * Accepted entry forms: "1.2.3.4", "2001:db8::1", "[2001:db8::1]",
 * "1.2.3.4:8080", "[2001:db8::1]:8080" (the port, 1-5 digits, is dropped).
 * Anything else ("unknown", "1.2.3", "_hidden", "a b") is malformed.
 *
 * IPv4-mapped IPv6 addresses are written in IPv4 form, so a dual-stack client
 * has one key. Returns the length written (without the NUL), -ENOSPC when
 * @cap is too small (HD_CLIENT_IP_MAX always suffices), -EAFNOSUPPORT when
 * @peer is neither AF_INET nor AF_INET6. Pure: any thread, no allocation.
 */
int hd_client_ip(const struct hd_cidr_set *trusted, const struct sockaddr *peer, const char *xff,
                 size_t xff_len, char *out, size_t cap);

#endif
