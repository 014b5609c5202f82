/* fuzz_proxy_proto.c: libFuzzer target for pp_parse (engine/proxy_proto.c). The input is
 * parsed whole and cut at a point taken from the input; the verdicts must agree (a prefix of
 * a header asks for more, a prefix that fails means the whole fails, a whole header is the
 * same length from any longer input), an address parsed is written back in both versions and
 * parses to itself, and the input read as an address block prints to one that parses back. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy_proto.h"

/* pp_parse on an exact-size heap copy, so ASan sees any read past n. */
static int parse(const uint8_t *p, size_t n, struct sockaddr_in6 *src)
{
    uint8_t *copy = malloc(n ? n : 1);
    int rc;

    CHECK(copy);
    memcpy(copy, p, n);
    rc = pp_parse(copy, n, src);
    free(copy);
    return rc;
}

static void check_address(const struct sockaddr_in6 *sa)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    CHECK(sa->sin6_family == AF_UNSPEC || sa->sin6_family == AF_INET ||
          sa->sin6_family == AF_INET6);
    if (sa->sin6_family == AF_INET6) /* stored as the IPv4 address it maps */
        CHECK(memcmp(&sa->sin6_addr, mapped, sizeof(mapped)));
}

static void round_trip(const struct sockaddr_in6 *sa)
{
    char out[PP_WRITE_MAX];
    struct sockaddr_in6 back;

    for (int v = 1; v <= 2; v++) {
        size_t n = pp_write(v, sa, sa, out);
        CHECK(n > 0 && n <= PP_WRITE_MAX);
        CHECK(parse((const uint8_t *)out, n, &back) == (int)n);
        if (sa->sin6_family == AF_UNSPEC)
            CHECK(back.sin6_family == AF_UNSPEC);
        else
            CHECK(!memcmp(&back, sa, sizeof(back)));
    }
}

static void cidr(const uint8_t *data, size_t size)
{
    char s[64], out[64];
    struct pp_cidr c, again;
    int rc;

    if (size >= sizeof(s))
        return;
    memcpy(s, data, size);
    s[size] = 0;
    rc = pp_cidr_parse(s, &c);
    CHECK(rc == 0 || rc == -EINVAL || rc == -EDOM);
    if (rc == -EINVAL)
        return;
    CHECK(c.family == AF_INET ? c.bits <= 32 : c.family == AF_INET6 && c.bits <= 128);
    pp_cidr_format(&c, out, sizeof(out));
    CHECK(pp_cidr_parse(out, &again) == 0 && !memcmp(&c, &again, sizeof(c)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in6 whole, part;
    size_t cut = size ? (size_t)data[0] * size / 256 : 0;
    int rc = parse(data, size, &whole), prc;

    CHECK(rc == -EAGAIN || rc == -EBADMSG || (rc > 0 && (size_t)rc <= size));
    CHECK(rc <= PP_V2_MAX);
    if (rc == -EAGAIN) /* never more than a header's worth of bytes without a verdict */
        CHECK(size < PP_V2_MAX);
    if (rc > 0) {
        check_address(&whole);
        round_trip(&whole);
        /* every proper prefix asks for more; the header alone is the same header */
        CHECK(parse(data, (size_t)rc - 1, &part) == -EAGAIN);
        CHECK(parse(data, (size_t)rc, &part) == rc && !memcmp(&part, &whole, sizeof(part)));
    }
    prc = parse(data, cut, &part);
    if (prc == -EBADMSG)
        CHECK(rc == -EBADMSG);
    else if (prc > 0)
        CHECK(rc == prc);
    else if (rc == -EAGAIN)
        CHECK(prc == -EAGAIN);
    if (rc > 0 && cut < (size_t)rc)
        CHECK(prc == -EAGAIN);
    cidr(data, size);
    return 0;
}
