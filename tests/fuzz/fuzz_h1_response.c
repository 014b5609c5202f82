/* fuzz_h1_response.c: libFuzzer target for h1_parse_response, checked for every request method
 * that changes framing: spans inside the input, body kinds consistent with status and method,
 * and the same result from a buffer cut at head_len. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "h1.h"

#define CAP 32

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static int parse(const char *buf, size_t len, const struct h1_limits *lim, enum h1_method m,
                 struct h1_response *res, struct h1_header *h)
{
    memset(res, 0, sizeof(*res));
    res->headers = h;
    res->headers_cap = CAP;
    return h1_parse_response(buf, len, res, lim, m);
}

static void check_response(const char *buf, size_t len, const struct h1_limits *lim,
                           enum h1_method m)
{
    struct h1_header h[CAP], h2[CAP];
    struct h1_response res, res2;
    int rc, rc2;

    rc = parse(buf, len, lim, m, &res, h);
    if (rc == -EAGAIN) {
        CHECK(len < lim->max_head_bytes);
        return;
    }
    if (rc < 0) {
        CHECK(rc == -EBADMSG);
        rc2 = parse(buf, len / 2, lim, m, &res2, h2);
        CHECK(rc2 == -EAGAIN || rc2 == -EBADMSG);
        return;
    }
    CHECK((uint32_t)rc == res.head_len && res.head_len <= len &&
          res.head_len <= lim->max_head_bytes);
    CHECK(res.status >= 100 && res.status <= 599 && res.minor <= 1);
    CHECK(res.reason_len == 0 || inside(res.reason, res.reason_len, buf, res.head_len));
    CHECK(res.n_headers <= lim->max_headers && res.n_headers <= CAP);
    CHECK(res.body <= H1_BODY_UNTIL_CLOSE);
    if (m == H1_M_HEAD || res.status < 200 || res.status == 204 || res.status == 304)
        CHECK(res.body == H1_BODY_NONE);
    CHECK(res.body != H1_BODY_UNTIL_CLOSE || !res.keep_alive);
    CHECK(res.body != H1_BODY_LENGTH || res.content_length > 0);
    for (uint32_t i = 0; i < res.n_headers; i++) {
        CHECK(h[i].name_len > 0 && inside(h[i].name, h[i].name_len, buf, res.head_len));
        CHECK(inside(h[i].value, h[i].value_len, buf, res.head_len));
    }
    rc2 = parse(buf, res.head_len, lim, m, &res2, h2);
    CHECK(rc2 == rc && res2.status == res.status && res2.body == res.body &&
          res2.keep_alive == res.keep_alive && res2.content_length == res.content_length &&
          res2.n_headers == res.n_headers);
    CHECK(parse(buf, res.head_len - 1, lim, m, &res2, h2) == -EAGAIN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct h1_limits small = {512, 8, 64};
    static const struct h1_limits normal = {16384, 100, 8192};
    static const enum h1_method methods[] = {H1_M_GET, H1_M_HEAD, H1_M_CONNECT};
    char *buf = malloc(size ? size : 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        check_response(buf, size, &small, methods[i]);
        check_response(buf, size, &normal, methods[i]);
    }
    free(buf);
    return 0;
}
