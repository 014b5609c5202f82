/* proxy_proto.h: the PROXY protocol (haproxy's doc/proxy-protocol.txt), versions 1 and 2: a
 * pure parser of the header that connections of a proxy_protocol listener begin with, the
 * writer of the header sent to backends (send_proxy_protocol), and the CIDR blocks of the
 * sources allowed to send one. No I/O, no allocation, no state: any thread may call these.
 * Addresses are a struct sockaddr_in6 holding IPv4 as a struct sockaddr_in in the same space
 * (AF_INET), as struct conn keeps its peer.
 */
#ifndef RP_PROXY_PROTO_H
#define RP_PROXY_PROTO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PP_V1_MAX 107  /* the longest v1 line, its CRLF included (the spec's worst case) */
#define PP_V2_MAX 2048 /* the longest v2 header accepted: 16 bytes, addresses and TLVs */

/* Parses the PROXY header at the start of p[0..n), the bytes received so far on a
 * connection (v1 or v2, told apart by the first byte). Returns:
 *  - the header's length once all of it is in p[0..n): *src is the client's address and
 *    port, or AF_UNSPEC when the header names none (v2 LOCAL, v1 UNKNOWN, a v2 family other
 *    than TCP over IPv4 or IPv6): the real peer stands. A v4-mapped IPv6 address
 *    (::ffff:a.b.c.d) comes back as the IPv4 address it maps;
 *  - -EAGAIN while p[0..n) is a proper prefix of a header that may still be valid;
 *  - -EBADMSG as soon as it cannot be one: anything but the exact syntax, an unknown
 *    version, command, family or protocol, a v2 address block too short for its family,
 *    TLVs that do not tile the rest of the header, a v1 line without its CRLF in
 *    PP_V1_MAX bytes, a v2 header longer than PP_V2_MAX.
 * Bytes past the header are not looked at. *src is written only when the header is whole. */
int pp_parse(const void *p, size_t n, struct sockaddr_in6 *src);

/* The v2 header's longest form this writes (TCP over IPv6, no TLV): the size of `out`. */
#define PP_WRITE_MAX 108

/* Writes the PROXY header (version 1 or 2) of a connection from src to dst into
 * out[0..PP_WRITE_MAX) and returns its length. Both AF_INET, or both AF_INET6 (a v4 address
 * and a v6 one are written as v6, the v4 one v4-mapped); anything else (AF_UNSPEC: an
 * address not known) is written as v1 "PROXY UNKNOWN" / v2 LOCAL. */
size_t pp_write(int version, const struct sockaddr_in6 *src, const struct sockaddr_in6 *dst,
                char out[PP_WRITE_MAX]);

/* An address block: `bits` leading bits of addr, for family AF_INET (addr[0..4)) or AF_INET6. */
struct pp_cidr {
    uint8_t family;
    uint8_t bits;
    uint8_t addr[16];
};

/* "10.0.0.0/8", "::1/128", or an address alone (/32 or /128). Returns 0, -EINVAL when s is
 * none of these, -EDOM when bits past the prefix are set ("10.0.0.1/8": *out then holds the
 * block they were probably meant as, 10.0.0.0/8, for the message). */
int pp_cidr_parse(const char *s, struct pp_cidr *out);

/* "10.0.0.0/8" into out[0..cap) (INET6_ADDRSTRLEN + 4 always suffices). */
void pp_cidr_format(const struct pp_cidr *c, char *out, size_t cap);

/* Whether peer lies in one of the blocks from[0..n); an empty list (n 0) allows every peer,
 * an unknown one (AF_UNSPEC) is allowed by none. */
bool pp_cidr_match(const struct pp_cidr *from, size_t n, const struct sockaddr_in6 *peer);

#endif /* RP_PROXY_PROTO_H */
