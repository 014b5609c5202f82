/* test_proxy_proto.c: unit tests for engine/proxy_proto.c. Every header of every form is
 * parsed whole and at every split point (each proper prefix must ask for more, and leave the
 * address alone); malformed ones fail, as early as they can; the limits hold to the byte;
 * written headers parse back; address blocks parse, print and match; the library takes
 * listeners with options and send_proxy_protocol, and refuses bad ones. Every parser input
 * sits right before a PROT_NONE page, so a read past its end crashes the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../engine/proxy_proto.c"
#include "guard.h"
#include "internal.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* pp_parse on a copy of p[0..n) that ends where an unreadable page begins. */
static int parse_guarded(const void *p, size_t n, struct sockaddr_in6 *src)
{
    struct guarded g;
    const void *q = guard_copy(&g, p, n);
    int rc = pp_parse(q, n, src);

    guard_free(&g);
    return rc;
}

/* A sentinel in *src: proper prefixes and failures must not write it. */
static void poison(struct sockaddr_in6 *sa)
{
    memset(sa, 0xa5, sizeof(*sa));
}

static bool poisoned(const struct sockaddr_in6 *sa)
{
    struct sockaddr_in6 p;

    poison(&p);
    return !memcmp(sa, &p, sizeof(p));
}

static void assert_v4(const struct sockaddr_in6 *sa, const char *ip, unsigned port)
{
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)sa;
    char got[INET_ADDRSTRLEN];

    assert_int_equal(sa->sin6_family, AF_INET);
    inet_ntop(AF_INET, &v4->sin_addr, got, sizeof(got));
    assert_string_equal(got, ip);
    assert_int_equal(ntohs(v4->sin_port), port);
}

static void assert_v6(const struct sockaddr_in6 *sa, const char *ip, unsigned port)
{
    char got[INET6_ADDRSTRLEN];

    assert_int_equal(sa->sin6_family, AF_INET6);
    inet_ntop(AF_INET6, &sa->sin6_addr, got, sizeof(got));
    assert_string_equal(got, ip);
    assert_int_equal(ntohs(sa->sin6_port), port);
}

/* A valid header h[0..n): whole it parses to n (also with bytes after it); each proper
 * prefix wants more and writes nothing. *src gets the address. */
static void parse_every_split(const void *h, size_t n, struct sockaddr_in6 *src)
{
    static const char after[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n\x16\x03\x01\x00\x00"
                                "PROXY ";
    char *more = malloc(n + sizeof(after));
    struct sockaddr_in6 sa;

    for (size_t k = 0; k < n; k++) {
        poison(&sa);
        if (parse_guarded(h, k, &sa) != -EAGAIN)
            fail_msg("prefix of %zu of %zu bytes: %d, want -EAGAIN", k, n,
                     parse_guarded(h, k, &sa));
        assert_true(poisoned(&sa));
    }
    poison(src);
    assert_int_equal(parse_guarded(h, n, src), (int)n);
    assert_false(poisoned(src));
    /* what follows the header (the HTTP or TLS stream) is not its business */
    assert_non_null(more);
    memcpy(more, h, n);
    memcpy(more + n, after, sizeof(after) - 1);
    poison(&sa);
    assert_int_equal(parse_guarded(more, n + sizeof(after) - 1, &sa), (int)n);
    assert_memory_equal(&sa, src, sizeof(sa));
    free(more);
}

static void v1_ok(const char *line, struct sockaddr_in6 *src)
{
    parse_every_split(line, strlen(line), src);
}

static void bad(const void *h, size_t n)
{
    struct sockaddr_in6 sa;
    int rc;

    poison(&sa);
    rc = parse_guarded(h, n, &sa);
    if (rc != -EBADMSG) {
        char shown[256];
        size_t k = n < 200 ? n : 200;
        for (size_t i = 0; i < k; i++)
            shown[i] = ((const char *)h)[i] >= 0x20 && ((const char *)h)[i] < 0x7f
                           ? ((const char *)h)[i]
                           : '.';
        shown[k] = 0;
        fail_msg("\"%s\" (%zu bytes): %d, want -EBADMSG", shown, n, rc);
    }
    assert_true(poisoned(&sa));
}

static void bad_str(const char *s)
{
    bad(s, strlen(s));
}

/* ---- version 1 ------------------------------------------------------------------------------ */

static void test_v1_forms(void **state)
{
    struct sockaddr_in6 sa;
    char worst[PP_V1_MAX + 1];

    (void)state;
    v1_ok("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &sa);
    assert_v4(&sa, "192.168.0.1", 56324);
    v1_ok("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &sa); /* 56 bytes */
    assert_v4(&sa, "255.255.255.255", 65535);
    v1_ok("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", &sa); /* the spec's range is [0..65535] */
    assert_v4(&sa, "0.0.0.0", 0);
    v1_ok("PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n", &sa);
    assert_v6(&sa, "2001:db8::1", 1234);
    v1_ok("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
          "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n",
          &sa); /* 104 bytes */
    assert_v6(&sa, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    v1_ok("PROXY TCP6 ::ffff:10.1.2.3 ::1 7 8\r\n", &sa); /* v4-mapped: stored as IPv4 */
    assert_v4(&sa, "10.1.2.3", 7);
    v1_ok("PROXY TCP6 ::1 ::1 9 9\r\n", &sa);
    assert_v6(&sa, "::1", 9);

    v1_ok("PROXY UNKNOWN\r\n", &sa); /* the short form: the real peer stands */
    assert_int_equal(sa.sin6_family, AF_UNSPEC);
    v1_ok("PROXY UNKNOWN whatever\tit says, \x01 even\r\n", &sa); /* ignored to the CRLF */
    assert_int_equal(sa.sin6_family, AF_UNSPEC);
    /* the spec's worst case, 107 bytes */
    snprintf(worst, sizeof(worst), "PROXY UNKNOWN %s %s 65535 65535\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(strlen(worst), PP_V1_MAX);
    v1_ok(worst, &sa);
    assert_int_equal(sa.sin6_family, AF_UNSPEC);
}

static void test_v1_malformed(void **state)
{
    static const char *const cases[] = {
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", /* two spaces */
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",  /* a trailing space */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", /* a field too many */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",     /* one too few */
        "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
        "PROXY TCP4\r\n",
        "PROXY TCP4 \r\n",
        "PROXY \r\n",
        "PROXY\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  /* a bare LF */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", /* a bare CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY UNKNOWN\n",
        "PROXY UNKNOWN\rx\r\n",
        "PROXY UNKNOWNX\r\n", /* UNKNOWN then a space, or the CRLF */
        "PROXY UNKNOW\r\n",
        "PROXY unknown\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", /* case matters */
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", /* heading zeroes: octal confusion */
        "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
        "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.1000 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", /* exactly four numbers */
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", /* the family says which format */
        "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
        "PROXY TCP6 ::1::2 ::1 1 2\r\n",
        "PROXY TCP6 12345::1 ::1 1 2\r\n",
        "PROXY TCP6 [::1] ::1 1 2\r\n",
        "PROXY TCP6 ::1%lo ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "GET / HTTP/1.1\r\n",
    };
    char longline[PP_V1_MAX + 2];

    (void)state;
    for (size_t i = 0; i < N(cases); i++)
        bad_str(cases[i]);
    bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 33);
    bad("PROXY TCP4 1.2\0.3.4 5.6.7.8 1 2\r\n", 33);

    /* no CRLF in the first 107 bytes: refused at 106, once the CR can no longer come in time */
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse_guarded(longline, PP_V1_MAX - 2, &(struct sockaddr_in6){0}), -EAGAIN);
    bad(longline, PP_V1_MAX - 1);
    bad(longline, PP_V1_MAX);
    /* CRLF one byte too late: 108 bytes */
    memcpy(longline + PP_V1_MAX - 1, "\r\n", 2);
    bad(longline, PP_V1_MAX + 1);
    /* and on time: 107 bytes */
    memcpy(longline + PP_V1_MAX - 2, "\r\n", 2);
    assert_int_equal(parse_guarded(longline, PP_V1_MAX, &(struct sockaddr_in6){0}), PP_V1_MAX);
}

/* What is not a PROXY header at all fails on its first byte: no waiting for a timeout. */
static void test_fails_early(void **state)
{
    struct sockaddr_in6 sa;

    (void)state;
    bad("G", 1);    /* an HTTP request on a proxy_protocol listener */
    bad("\x16", 1); /* a TLS ClientHello */
    bad("\0", 1);
    bad("PX", 2); /* "PROXY " as far as it goes */
    bad("PROXY\r", 6);
    bad("PROXYX", 6);
    bad("\r\n\r\n\0\r\nQUIX", 11); /* the v2 signature as far as it goes */
    bad("\r\r", 2);
    bad("\r\n\r\n\0\r\nQUIT\n\x11", 13); /* version 1 in the v2 format */
    assert_int_equal(parse_guarded("", 0, &sa), -EAGAIN);
    assert_int_equal(parse_guarded("P", 1, &sa), -EAGAIN);
    assert_int_equal(parse_guarded("\r", 1, &sa), -EAGAIN);
}

/* ---- version 2 ------------------------------------------------------------------------------ */

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* A v2 header: signature, ver_cmd, fam, the block's length, the block. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *block, size_t len)
{
    memcpy(out, SIG, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)len;
    if (len)
        memcpy(out + 16, block, len);
    return 16 + len;
}

static const unsigned char tcp4_block[12] = {10, 1, 2, 3, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb};

static void test_v2_forms(void **state)
{
    unsigned char h[PP_V2_MAX + 16], block[PP_V2_MAX];
    struct sockaddr_in6 sa;
    size_t n;

    (void)state;
    n = v2(h, 0x21, 0x11, tcp4_block, 12); /* TCP over IPv4 */
    parse_every_split(h, n, &sa);
    assert_v4(&sa, "10.1.2.3", 0xdc04);

    memset(block, 0, 36); /* TCP over IPv6: 2001:db8::5 port 4242 */
    block[0] = 0x20, block[1] = 0x01, block[2] = 0x0d, block[3] = 0xb8, block[15] = 5;
    block[16] = 0xfe, block[17] = 0x80, block[31] = 1;
    block[32] = 0x10, block[33] = 0x92, block[34] = 0, block[35] = 80;
    n = v2(h, 0x21, 0x21, block, 36);
    parse_every_split(h, n, &sa);
    assert_v6(&sa, "2001:db8::5", 4242);
    memset(block, 0, 16); /* ::ffff:172.16.0.9, stored as IPv4 */
    block[10] = block[11] = 0xff, block[12] = 172, block[13] = 16, block[15] = 9;
    n = v2(h, 0x21, 0x21, block, 36);
    parse_every_split(h, n, &sa);
    assert_v4(&sa, "172.16.0.9", 4242);

    /* LOCAL: the real peer stands, whatever the block says (its family is ignored) */
    n = v2(h, 0x20, 0x00, NULL, 0);
    parse_every_split(h, n, &sa);
    assert_int_equal(sa.sin6_family, AF_UNSPEC);
    n = v2(h, 0x20, 0x11, tcp4_block, 12);
    parse_every_split(h, n, &sa);
    assert_int_equal(sa.sin6_family, AF_UNSPEC);
    n = v2(h, 0x20, 0xff, "\x01\x02\x03", 3);
    parse_every_split(h, n, &sa);
    assert_int_equal(sa.sin6_family, AF_UNSPEC);

    /* PROXY with a family that gives no TCP address: UNSPEC, UDP, UNIX, and the valid
     * combinations the spec does not list: the real peer stands */
    static const unsigned fams[] = {0x00, 0x12, 0x22, 0x31, 0x32, 0x10, 0x01, 0x02, 0x20, 0x30};
    memset(block, 0x41, 216);
    for (size_t i = 0; i < N(fams); i++) {
        n = v2(h, 0x21, fams[i], block, fams[i] >= 0x30 ? 216 : fams[i] ? 36 : 0);
        parse_every_split(h, n, &sa);
        assert_int_equal(sa.sin6_family, AF_UNSPEC);
    }

    /* TLVs after the addresses are skipped: NOOP (empty and not), AUTHORITY, a custom one */
    memcpy(block, tcp4_block, 12);
    memcpy(block + 12,
           "\x04\x00\x00"
           "\x02\x00\x05"
           "a.com"
           "\x04\x00\x02xx"
           "\xe0\x00\x01Z",
           20);
    n = v2(h, 0x21, 0x11, block, 32);
    parse_every_split(h, n, &sa);
    assert_v4(&sa, "10.1.2.3", 0xdc04);
}

static void test_v2_limits(void **state)
{
    unsigned char h[PP_V2_MAX + 16], block[PP_V2_MAX];
    size_t room = PP_V2_MAX - 16 - 12 - 3; /* one TLV filling the longest header */
    struct sockaddr_in6 sa;
    size_t n;

    (void)state;
    memcpy(block, tcp4_block, 12);
    block[12] = 0x04, block[13] = (unsigned char)(room >> 8), block[14] = (unsigned char)room;
    memset(block + 15, 'x', room);
    n = v2(h, 0x21, 0x11, block, 12 + 3 + room);
    assert_int_equal(n, PP_V2_MAX);
    parse_every_split(h, n, &sa);
    assert_v4(&sa, "10.1.2.3", 0xdc04);

    /* one byte longer is refused as soon as its length field is read */
    room++;
    block[13] = (unsigned char)(room >> 8), block[14] = (unsigned char)room;
    n = v2(h, 0x21, 0x11, block, 12 + 3 + room);
    bad(h, 16);
    bad(h, n);
    n = v2(h, 0x20, 0x00, block, PP_V2_MAX - 15); /* LOCAL too */
    bad(h, 16);
    v2(h, 0x21, 0x11, NULL, 0);
    h[14] = h[15] = 0xff;
    bad(h, 16);
}

static void test_v2_malformed(void **state)
{
    unsigned char h[600], block[300] = {0};
    size_t n;

    (void)state;
    memcpy(block, tcp4_block, 12);
    for (int i = 0; i < 12; i++) { /* every signature byte */
        n = v2(h, 0x21, 0x11, block, 12);
        h[i] ^= 0x20;
        bad(h, i + 1);
        bad(h, n);
    }
    static const unsigned ver_cmd[] = {0x11, 0x31, 0x01, 0xf1, 0x22, 0x2f, 0x23};
    for (size_t i = 0; i < N(ver_cmd); i++) { /* version 2 only; LOCAL and PROXY only */
        n = v2(h, ver_cmd[i], 0x11, block, 12);
        bad(h, 13);
        bad(h, n);
    }
    static const unsigned fam[] = {0x41, 0xf1, 0x13, 0x1f, 0x03, 0x33, 0xff};
    for (size_t i = 0; i < N(fam); i++) { /* families and protocols the spec defines */
        n = v2(h, 0x21, fam[i], block, 36);
        bad(h, 14);
        bad(h, n);
    }
    /* address blocks too short for the family */
    n = v2(h, 0x21, 0x11, block, 11);
    bad(h, 16);
    bad(h, n);
    n = v2(h, 0x21, 0x21, block, 35);
    bad(h, 16);
    n = v2(h, 0x21, 0x11, NULL, 0);
    bad(h, n);
    /* TLVs that do not tile the rest: a cut header, a value past the end, a stray byte */
    memcpy(block + 12, "\x04\x00", 2);
    bad(h, v2(h, 0x21, 0x11, block, 14));
    memcpy(block + 12, "\x04\x00\x03xy", 5);
    bad(h, v2(h, 0x21, 0x11, block, 17));
    memcpy(block + 12, "\x04\x00\x00\x00", 4);
    bad(h, v2(h, 0x21, 0x11, block, 16));
    memcpy(block + 36, "\x02\x00\x10", 3);
    bad(h, v2(h, 0x21, 0x21, block, 39));
}

/* ---- writing ------------------------------------------------------------------------------- */

static struct sockaddr_in6 addr(const char *ip, unsigned port)
{
    struct sockaddr_in6 sa;
    struct sockaddr_in *v4 = (struct sockaddr_in *)(void *)&sa;

    memset(&sa, 0, sizeof(sa));
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
        sa.sin6_family = AF_INET6;
        sa.sin6_port = htons((uint16_t)port);
    }
    return sa;
}

static void test_write(void **state)
{
    struct sockaddr_in6 c4 = addr("10.1.2.3", 5555), p4 = addr("192.168.0.1", 443);
    struct sockaddr_in6 c6 = addr("2001:db8::7", 6666), p6 = addr("::1", 8443);
    struct sockaddr_in6 none = {.sin6_family = AF_UNSPEC}, sa;
    char out[PP_WRITE_MAX];
    size_t n;

    (void)state;
    n = pp_write(1, &c4, &p4, out);
    assert_int_equal(n, strlen("PROXY TCP4 10.1.2.3 192.168.0.1 5555 443\r\n"));
    assert_memory_equal(out, "PROXY TCP4 10.1.2.3 192.168.0.1 5555 443\r\n", n);
    n = pp_write(1, &c6, &p6, out);
    assert_memory_equal(out, "PROXY TCP6 2001:db8::7 ::1 6666 8443\r\n", n);
    n = pp_write(1, &c6, &p4, out); /* mixed: both as IPv6, the v4 one mapped */
    assert_memory_equal(out, "PROXY TCP6 2001:db8::7 ::ffff:192.168.0.1 6666 443\r\n", n);
    n = pp_write(1, &none, &p4, out);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", n);

    n = pp_write(2, &c4, &p4, out);
    assert_int_equal(n, 28);
    assert_memory_equal(out, SIG "\x21\x11\x00\x0c\x0a\x01\x02\x03\xc0\xa8\x00\x01\x15\xb3\x01\xbb",
                        28);
    n = pp_write(2, &c6, &p6, out);
    assert_int_equal(n, 52);
    assert_memory_equal(out + 12, "\x21\x21\x00\x24", 4);
    n = pp_write(2, &p6, &none, out);
    assert_int_equal(n, 16);
    assert_memory_equal(out, SIG "\x20\x00\x00\x00", 16);

    /* everything written parses back to its source */
    const struct sockaddr_in6 *srcs[] = {&c4, &c6, &p6}, *dsts[] = {&p4, &p6, &p4};
    for (int v = 1; v <= 2; v++)
        for (size_t i = 0; i < N(srcs); i++) {
            n = pp_write(v, srcs[i], dsts[i], out);
            assert_true(n > 0 && n <= PP_WRITE_MAX);
            parse_every_split(out, n, &sa);
            assert_memory_equal(&sa, srcs[i], sizeof(sa));
        }
    /* the longest v1 line fits */
    struct sockaddr_in6 f = addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
    n = pp_write(1, &f, &f, out);
    assert_int_equal(n, 104);
    parse_every_split(out, n, &sa);
}

/* ---- address blocks ------------------------------------------------------------------------ */

static bool matches(const char *cidr, const char *ip)
{
    struct pp_cidr c;
    struct sockaddr_in6 sa = addr(ip, 1);

    assert_int_equal(pp_cidr_parse(cidr, &c), 0);
    return pp_cidr_match(&c, 1, &sa);
}

static void test_cidr(void **state)
{
    static const char *const invalid[] = {
        "",           "/8",          "10.0.0.0/",    "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/-1",
        "10.0.0/8",   "10.0.0.0/8/", "10.0.0.0 /8",  "::1/129",     "::1/1280",    "[::1]/128",
        "localhost",  "10.0.0.0/+8", "10.0.0.0/0x8", "::1/ 12",     " 10.0.0.0/8", "1.2.3.4.5",
        "::1%lo/128", "10.0.0.256",
    };
    static const struct {
        const char *block, *ip;
        bool in;
    } match[] = {
        {"10.0.0.0/8", "10.255.1.2", true},
        {"10.0.0.0/8", "10.0.0.0", true},
        {"10.0.0.0/8", "11.0.0.1", false},
        {"10.0.0.0/8", "9.255.255.255", false},
        {"127.0.0.1/32", "127.0.0.1", true},
        {"127.0.0.1/32", "127.0.0.2", false},
        {"192.168.1.128/25", "192.168.1.200", true},
        {"192.168.1.128/25", "192.168.1.127", false},
        {"0.0.0.0/0", "1.2.3.4", true},
        {"0.0.0.0/0", "::1", false}, /* families never cross */
        {"::/0", "1.2.3.4", false},
        {"::/0", "2001:db8::1", true},
        {"::1/128", "::1", true},
        {"::1/128", "::2", false},
        {"fe80::/10", "febf:ffff::1", true},
        {"fe80::/10", "fec0::1", false},
        {"2001:db8:abcd:12::/63", "2001:db8:abcd:13:ffff::1", true},
        {"2001:db8:abcd:12::/63", "2001:db8:abcd:14::1", false},
    };
    struct pp_cidr c, list[3];
    struct sockaddr_in6 sa;
    char out[INET6_ADDRSTRLEN + 4];

    (void)state;
    for (size_t i = 0; i < N(invalid); i++)
        if (pp_cidr_parse(invalid[i], &c) != -EINVAL)
            fail_msg("\"%s\" parsed", invalid[i]);

    assert_int_equal(pp_cidr_parse("10.0.0.0/8", &c), 0);
    pp_cidr_format(&c, out, sizeof(out));
    assert_string_equal(out, "10.0.0.0/8");
    assert_int_equal(pp_cidr_parse("192.168.1.1", &c), 0); /* an address alone: a /32 */
    pp_cidr_format(&c, out, sizeof(out));
    assert_string_equal(out, "192.168.1.1/32");
    assert_int_equal(pp_cidr_parse("2001:DB8::/32", &c), 0);
    pp_cidr_format(&c, out, sizeof(out));
    assert_string_equal(out, "2001:db8::/32");
    assert_int_equal(pp_cidr_parse("::1", &c), 0);
    assert_int_equal(c.bits, 128);
    /* bits past the prefix: refused, with the block it probably means */
    assert_int_equal(pp_cidr_parse("10.0.0.1/8", &c), -EDOM);
    pp_cidr_format(&c, out, sizeof(out));
    assert_string_equal(out, "10.0.0.0/8");
    assert_int_equal(pp_cidr_parse("192.168.1.128/25", &c), 0);
    assert_int_equal(pp_cidr_parse("192.168.1.129/25", &c), -EDOM);
    assert_int_equal(pp_cidr_parse("192.168.1.129/24", &c), -EDOM);
    assert_int_equal(pp_cidr_parse("fe80::1/10", &c), -EDOM);
    pp_cidr_format(&c, out, sizeof(out));
    assert_string_equal(out, "fe80::/10");

    for (size_t i = 0; i < N(match); i++)
        if (matches(match[i].block, match[i].ip) != match[i].in)
            fail_msg("%s in %s: %d", match[i].ip, match[i].block, !match[i].in);

    /* a list: any block will do; an empty one allows all; an unknown peer none */
    assert_int_equal(pp_cidr_parse("10.0.0.0/8", &list[0]), 0);
    assert_int_equal(pp_cidr_parse("127.0.0.1/32", &list[1]), 0);
    assert_int_equal(pp_cidr_parse("::1/128", &list[2]), 0);
    sa = addr("127.0.0.1", 9);
    assert_true(pp_cidr_match(list, 3, &sa));
    sa = addr("::1", 9);
    assert_true(pp_cidr_match(list, 3, &sa));
    sa = addr("127.0.0.5", 9);
    assert_false(pp_cidr_match(list, 3, &sa));
    assert_true(pp_cidr_match(list, 0, &sa));
    sa.sin6_family = AF_UNSPEC;
    assert_false(pp_cidr_match(list, 3, &sa));
}

/* ---- the library's listeners ---------------------------------------------------------------- */

static void test_server_listeners(void **state)
{
    const char *plain[] = {"127.0.0.1:8081"};
    const char *from[] = {"10.0.0.0/8", "::1", "127.0.0.1/32"};
    rp_listener_config ls[] = {
        {.addr = "127.0.0.1:8082",
         .proxy_protocol = true,
         .proxy_protocol_from = from,
         .n_proxy_protocol_from = 3},
        {.addr = "127.0.0.1:8443", .tls = true, .proxy_protocol = true},
        {.addr = "127.0.0.1:8083"},
    };
    rp_server_config cfg = {
        .listen = plain, .n_listen = 1, .listeners = ls, .n_listeners = 3, .workers = 1};
    struct sockaddr_in6 peer = addr("10.9.8.7", 1);
    rp_server *s = rp_server_new(&cfg);

    (void)state;
    assert_non_null(s);
    assert_int_equal(s->n_listen, 4);
    assert_string_equal(s->listen[0].addr, "127.0.0.1:8081");
    assert_false(s->listen[0].proxy_protocol);
    assert_string_equal(s->listen[1].addr, "127.0.0.1:8082");
    assert_true(s->listen[1].proxy_protocol && !s->listen[1].tls);
    assert_int_equal(s->listen[1].n_pp_from, 3);
    assert_true(pp_cidr_match(s->listen[1].pp_from, 3, &peer));
    peer = addr("::1", 1);
    assert_true(pp_cidr_match(s->listen[1].pp_from, 3, &peer));
    peer = addr("127.0.0.2", 1);
    assert_false(pp_cidr_match(s->listen[1].pp_from, 3, &peer));
    assert_true(s->listen[2].proxy_protocol && s->listen[2].tls);
    assert_int_equal(s->listen[2].n_pp_from, 0);
    assert_false(s->listen[3].proxy_protocol);
    rp_server_free(s);

    /* with listeners alone there is no default listen */
    cfg.n_listen = 0;
    cfg.n_listeners = 1;
    s = rp_server_new(&cfg);
    assert_non_null(s);
    assert_int_equal(s->n_listen, 1);
    rp_server_free(s);

    /* refused: a block that is none, bits past the prefix, from without proxy_protocol */
    static const char *const bad[] = {"10.0.0.0/33", "10.0.0.1/8", "example.com", ""};
    for (size_t i = 0; i < N(bad); i++) {
        const char *one[] = {bad[i]};
        ls[0].proxy_protocol_from = one;
        ls[0].n_proxy_protocol_from = 1;
        assert_null(rp_server_new(&cfg));
    }
    ls[0].proxy_protocol_from = from;
    ls[0].proxy_protocol = false;
    assert_null(rp_server_new(&cfg));
    ls[0].proxy_protocol = true;
    ls[0].addr = NULL;
    assert_null(rp_server_new(&cfg));

    /* send_proxy_protocol: versions 1 and 2, or none */
    rp_backend_config be = {.addr = "http://127.0.0.1:9"};
    rp_domain_config d = {.domain = "a.local", .backends = &be, .n_backends = 1};
    s = rp_server_new(NULL);
    assert_non_null(s);
    d.send_proxy_protocol = 3;
    assert_int_equal(rp_add_proxy_domain(s, &d), -EINVAL);
    d.send_proxy_protocol = -1;
    assert_int_equal(rp_add_proxy_domain(s, &d), -EINVAL);
    d.send_proxy_protocol = 2;
    assert_int_equal(rp_add_proxy_domain(s, &d), 0);
    assert_int_equal(s->rt.domains[0]->send_pp, 2);
    rp_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_forms),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_fails_early),
        cmocka_unit_test(test_v2_forms),
        cmocka_unit_test(test_v2_limits),
        cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_server_listeners),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
