/* proxy_proto.c: the PROXY protocol, versions 1 and 2 (proxy_proto.h). The parser is strict
 * as the spec asks ("any sequence which does not exactly match the protocol must be
 * discarded"), and says no as early as it can: a plain HTTP request or a TLS ClientHello on a
 * proxy_protocol listener fails on its first byte, not after a timeout.
 */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum { V2_LOCAL = 0x0, V2_PROXY = 0x1 };
enum { V2_TCP4 = 0x11, V2_TCP6 = 0x21 };

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- addresses ---------------------------------------------------------------------------- */

static void set_v4(struct sockaddr_in6 *sa, const unsigned char a[4], uint16_t port)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)(void *)sa;

    memset(sa, 0, sizeof(*sa));
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    memcpy(&v4->sin_addr, a, 4);
}

/* A v4-mapped address is stored as the IPv4 one, as a client reaching an IPv4 listener. */
static void set_v6(struct sockaddr_in6 *sa, const unsigned char a[16], uint16_t port)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (!memcmp(a, mapped, sizeof(mapped))) {
        set_v4(sa, a + 12, port);
        return;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    memcpy(&sa->sin6_addr, a, 16);
}

/* ---- version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ------------------------------------ */

/* A decimal number of 1-`digits` digits without a leading zero, at most max. */
static bool v1_number(const char *p, size_t n, size_t digits, unsigned max, unsigned *v)
{
    *v = 0;
    if (n == 0 || n > digits || (p[0] == '0' && n > 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        *v = *v * 10 + (unsigned)(p[i] - '0');
    }
    return *v <= max;
}

/* Exactly four decimal numbers 0-255, one dot between each (no leading zeros: no octal). */
static bool v1_ipv4(const char *p, size_t n, unsigned char a[4])
{
    const char *end = p + n;

    for (int i = 0; i < 4; i++) {
        const char *dot = i < 3 ? memchr(p, '.', (size_t)(end - p)) : end;
        unsigned v;
        if (!dot || !v1_number(p, (size_t)(dot - p), 3, 255, &v))
            return false;
        a[i] = (unsigned char)v;
        p = dot + 1;
    }
    return true;
}

static bool v1_ipv6(const char *p, size_t n, unsigned char a[16])
{
    char s[INET6_ADDRSTRLEN];

    if (n == 0 || n >= sizeof(s))
        return false;
    memcpy(s, p, n);
    s[n] = 0;
    return inet_pton(AF_INET6, s, a) == 1;
}

/* The next field of a line: up to a space or the end; exactly one space goes after it
 * unless it is the last. Returns false for an empty field. */
static bool v1_field(const char **p, const char *end, bool last, const char **f, size_t *fn)
{
    const char *sp = memchr(*p, ' ', (size_t)(end - *p));

    if (last && sp)
        return false;
    if (!last && !sp)
        return false;
    *f = *p;
    *fn = (size_t)((last ? end : sp) - *p);
    *p = last ? end : sp + 1;
    return *fn > 0;
}

/* The line p[0..n) between "PROXY " and its CRLF. */
static bool v1_line(const char *p, size_t n, struct sockaddr_in6 *src)
{
    const char *end = p + n, *f[4];
    size_t fn[4];
    unsigned char sa[16], da[16];
    unsigned sport, dport;
    bool v6;

    if (n >= 7 && !memcmp(p, "UNKNOWN", 7) && (n == 7 || p[7] == ' ')) {
        memset(src, 0, sizeof(*src)); /* AF_UNSPEC; the rest of the line is to be ignored */
        return true;
    }
    if (n < 5 || memcmp(p, "TCP", 3) || (p[3] != '4' && p[3] != '6') || p[4] != ' ')
        return false;
    v6 = p[3] == '6';
    p += 5;
    for (int i = 0; i < 4; i++)
        if (!v1_field(&p, end, i == 3, &f[i], &fn[i]))
            return false;
    if (v6 ? !v1_ipv6(f[0], fn[0], sa) || !v1_ipv6(f[1], fn[1], da)
           : !v1_ipv4(f[0], fn[0], sa) || !v1_ipv4(f[1], fn[1], da))
        return false;
    if (!v1_number(f[2], fn[2], 5, 65535, &sport) || !v1_number(f[3], fn[3], 5, 65535, &dport))
        return false;
    if (v6)
        set_v6(src, sa, (uint16_t)sport);
    else
        set_v4(src, sa, (uint16_t)sport);
    return true;
}

static int parse_v1(const char *p, size_t n, struct sockaddr_in6 *src)
{
    /* the CR must come early enough for its LF to be within the first PP_V1_MAX bytes */
    size_t lim = min_size(n, PP_V1_MAX - 1), i = 0;

    if (memcmp(p, "PROXY ", min_size(n, 6)))
        return -EBADMSG;
    while (i < lim && p[i] != '\r' && p[i] != '\n')
        i++;
    if (i == lim)
        return n >= PP_V1_MAX - 1 ? -EBADMSG : -EAGAIN;
    if (i + 1 == n && p[i] == '\r')
        return -EAGAIN;
    if (p[i] != '\r' || p[i + 1] != '\n') /* only CRLF ends the line: no bare CR or LF */
        return -EBADMSG;
    if (!v1_line(p + 6, i - 6, src))
        return -EBADMSG;
    return (int)i + 2;
}

/* ---- version 2: the signature, version and command, family, length, addresses, TLVs ------- */

/* Type, 16-bit length, value: each TLV must fit, and together they fill the rest exactly. */
static bool v2_tlvs_fit(const unsigned char *p, size_t n)
{
    while (n) {
        size_t len;
        if (n < 3)
            return false;
        len = 3 + ((size_t)p[1] << 8 | p[2]);
        if (len > n)
            return false;
        p += len;
        n -= len;
    }
    return true;
}

static int parse_v2(const unsigned char *p, size_t n, struct sockaddr_in6 *src)
{
    unsigned cmd, fam;
    size_t len, need = 0;

    if (memcmp(p, v2_sig, min_size(n, sizeof(v2_sig))))
        return -EBADMSG;
    if (n > 12 && ((p[12] >> 4) != 2 || (p[12] & 0xf) > V2_PROXY))
        return -EBADMSG; /* version 2 only; commands LOCAL and PROXY only */
    /* PROXY: families UNSPEC, INET, INET6, UNIX, protocols UNSPEC, STREAM, DGRAM (LOCAL
     * ignores the family, as the spec says) */
    if (n > 13 && (p[12] & 0xf) == V2_PROXY && ((p[13] >> 4) > 3 || (p[13] & 0xf) > 2))
        return -EBADMSG;
    if (n < 16)
        return -EAGAIN;
    cmd = p[12] & 0xf;
    fam = p[13];
    len = 16 + ((size_t)p[14] << 8 | p[15]);
    if (cmd == V2_PROXY)
        need = fam == V2_TCP4 ? 12 : fam == V2_TCP6 ? 36 : 0;
    if (len > PP_V2_MAX || len - 16 < need)
        return -EBADMSG;
    if (n < len)
        return -EAGAIN;
    if (!need) { /* LOCAL, or a family we do not take addresses from: the real peer stands */
        memset(src, 0, sizeof(*src)); /* AF_UNSPEC */
        return (int)len;
    }
    if (!v2_tlvs_fit(p + 16 + need, len - 16 - need))
        return -EBADMSG;
    if (fam == V2_TCP4)
        set_v4(src, p + 16, (uint16_t)(p[24] << 8 | p[25]));
    else
        set_v6(src, p + 16, (uint16_t)(p[48] << 8 | p[49]));
    return (int)len;
}

int pp_parse(const void *buf, size_t n, struct sockaddr_in6 *src)
{
    const unsigned char *p = buf;

    if (!n)
        return -EAGAIN;
    if (p[0] == 'P')
        return parse_v1(buf, n, src);
    if (p[0] == v2_sig[0])
        return parse_v2(p, n, src);
    return -EBADMSG;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* The 16 address bytes of sa, v4 as v4-mapped. */
static void v6_bytes(const struct sockaddr_in6 *sa, unsigned char out[16])
{
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)sa;

    if (sa->sin6_family == AF_INET6) {
        memcpy(out, &sa->sin6_addr, 16);
        return;
    }
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, &v4->sin_addr, 4);
}

static uint16_t port_of(const struct sockaddr_in6 *sa)
{
    return ntohs(sa->sin6_family == AF_INET6
                     ? sa->sin6_port
                     : ((const struct sockaddr_in *)(const void *)sa)->sin_port);
}

static bool known(const struct sockaddr_in6 *sa)
{
    return sa->sin6_family == AF_INET || sa->sin6_family == AF_INET6;
}

static size_t write_v1(const struct sockaddr_in6 *src, const struct sockaddr_in6 *dst, bool v4,
                       char *out)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    unsigned char a[16];
    int n;

    if (v4) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)src)->sin_addr, s,
                  sizeof(s));
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)dst)->sin_addr, d,
                  sizeof(d));
    } else {
        v6_bytes(src, a);
        inet_ntop(AF_INET6, a, s, sizeof(s));
        v6_bytes(dst, a);
        inet_ntop(AF_INET6, a, d, sizeof(d));
    }
    n = snprintf(out, PP_WRITE_MAX, "PROXY TCP%c %s %s %u %u\r\n", v4 ? '4' : '6', s, d,
                 port_of(src), port_of(dst));
    return n > 0 && n < PP_WRITE_MAX ? (size_t)n : 0;
}

static size_t write_v2(const struct sockaddr_in6 *src, const struct sockaddr_in6 *dst, bool v4,
                       char *out)
{
    unsigned char *o = (unsigned char *)out;
    size_t alen = v4 ? 12 : 36, half = v4 ? 4 : 16;
    uint16_t sp = port_of(src), dp = port_of(dst);

    memcpy(o, v2_sig, sizeof(v2_sig));
    o[12] = 0x20 | V2_PROXY;
    o[13] = v4 ? V2_TCP4 : V2_TCP6;
    o[14] = 0;
    o[15] = (unsigned char)alen;
    if (v4) {
        memcpy(o + 16, &((const struct sockaddr_in *)(const void *)src)->sin_addr, 4);
        memcpy(o + 20, &((const struct sockaddr_in *)(const void *)dst)->sin_addr, 4);
    } else {
        v6_bytes(src, o + 16);
        v6_bytes(dst, o + 32);
    }
    o[16 + 2 * half] = (unsigned char)(sp >> 8);
    o[17 + 2 * half] = (unsigned char)sp;
    o[18 + 2 * half] = (unsigned char)(dp >> 8);
    o[19 + 2 * half] = (unsigned char)dp;
    return 16 + alen;
}

size_t pp_write(int version, const struct sockaddr_in6 *src, const struct sockaddr_in6 *dst,
                char out[PP_WRITE_MAX])
{
    bool v4 = src->sin6_family == AF_INET && dst->sin6_family == AF_INET;

    if (!known(src) || !known(dst)) {
        if (version == 1) {
            memcpy(out, "PROXY UNKNOWN\r\n", 15);
            return 15;
        }
        memcpy(out, v2_sig, sizeof(v2_sig));
        memcpy(out + 12, "\x20\x00\x00\x00", 4); /* LOCAL, UNSPEC, no address */
        return 16;
    }
    return version == 1 ? write_v1(src, dst, v4, out) : write_v2(src, dst, v4, out);
}

/* ---- address blocks ------------------------------------------------------------------------ */

/* Clears the bits of c->addr past c->bits; returns whether any was set. */
static bool mask_host_bits(struct pp_cidr *c)
{
    size_t len = c->family == AF_INET ? 4 : 16;
    bool set = false;

    for (size_t i = 0; i < len; i++) {
        unsigned keep = c->bits >= 8 * (i + 1) ? 8 : c->bits > 8 * i ? c->bits - 8 * i : 0;
        unsigned char mask = (unsigned char)(0xff00u >> keep);
        set |= (c->addr[i] & (unsigned char)~mask) != 0;
        c->addr[i] &= mask;
    }
    return set;
}

int pp_cidr_parse(const char *s, struct pp_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    unsigned bits = 0, max;

    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, host, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -EINVAL;
    max = out->family == AF_INET ? 32 : 128;
    if (slash && !v1_number(slash + 1, strlen(slash + 1), 3, max, &bits))
        return -EINVAL;
    out->bits = (uint8_t)(slash ? bits : max);
    return mask_host_bits(out) ? -EDOM : 0;
}

void pp_cidr_format(const struct pp_cidr *c, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];

    if (!inet_ntop(c->family, c->addr, a, sizeof(a)))
        a[0] = 0;
    snprintf(out, cap, "%s/%u", a, c->bits);
}

static bool in_block(const struct pp_cidr *c, const unsigned char *a)
{
    unsigned whole = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, a, whole))
        return false;
    return !rest || !((c->addr[whole] ^ a[whole]) & (unsigned char)(0xff00u >> rest));
}

bool pp_cidr_match(const struct pp_cidr *from, size_t n, const struct sockaddr_in6 *peer)
{
    const unsigned char *a;

    if (!n)
        return true;
    if (peer->sin6_family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)peer)->sin_addr;
    else if (peer->sin6_family == AF_INET6)
        a = (const unsigned char *)&peer->sin6_addr;
    else
        return false;
    for (size_t i = 0; i < n; i++)
        if (from[i].family == peer->sin6_family && in_block(&from[i], a))
            return true;
    return false;
}
