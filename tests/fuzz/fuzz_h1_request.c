/* fuzz_h1_request.c: libFuzzer target for h1_parse_request. Besides crashes and over-reads it
 * checks that spans stay inside the input, that a parsed head parses identically from a buffer
 * cut at head_len, and that a prefix never reports an error the whole input would not. */
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

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int parse(const char *buf, size_t len, const struct h1_limits *lim, struct h1_request *req,
                 struct h1_header *h, int *status)
{
    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->headers_cap = CAP;
    *status = 0;
    return h1_parse_request(buf, len, req, lim, status);
}

static void check_request(const char *buf, size_t len, const struct h1_limits *lim)
{
    struct h1_header h[CAP], h2[CAP];
    struct h1_request req, req2;
    int st, st2, rc, rc2;

    rc = parse(buf, len, lim, &req, h, &st);
    if (rc == -EAGAIN) {
        CHECK(len < lim->max_head_bytes);
        return;
    }
    if (rc < 0) {
        CHECK(rc == -EBADMSG);
        CHECK(st == 400 || st == 414 || st == 431 || st == 417 || st == 501 || st == 505);
        /* The same error from a prefix, or none yet. */
        rc2 = parse(buf, len / 2, lim, &req2, h2, &st2);
        CHECK(rc2 == -EAGAIN || (rc2 == rc && st2 == st));
        return;
    }

    CHECK((uint32_t)rc == req.head_len && req.head_len <= len);
    CHECK(req.head_len <= lim->max_head_bytes);
    CHECK(req.n_headers <= lim->max_headers && req.n_headers <= CAP);
    CHECK(req.method_len > 0 && inside(req.method, req.method_len, buf, req.head_len));
    CHECK(req.target_len > 0 && req.target_len <= lim->max_target_len);
    CHECK(inside(req.target, req.target_len, buf, req.head_len));
    CHECK(inside(req.path, req.path_len, buf, req.head_len) ||
          (req.path_len == 1 && req.path[0] == '/'));
    CHECK(!req.host || inside(req.host, req.host_len, buf, req.head_len));
    CHECK(req.minor <= 1);
    CHECK(req.minor == 0 || req.host);
    CHECK(req.body <= H1_BODY_CHUNKED);
    CHECK(req.body != H1_BODY_LENGTH || req.content_length > 0);
    CHECK(req.body != H1_BODY_CHUNKED || (req.content_length == 0 && req.minor == 1));
    CHECK(req.content_length <= (uint64_t)INT64_MAX);
    for (uint32_t i = 0; i < req.n_headers; i++) {
        const struct h1_header *x = &h[i];

        CHECK(x->name_len > 0 && inside(x->name, x->name_len, buf, req.head_len));
        CHECK(inside(x->value, x->value_len, buf, req.head_len));
        CHECK(x->value_len == 0 || (!is_ows(x->value[0]) && !is_ows(x->value[x->value_len - 1])));
        CHECK(!memchr(x->value, '\r', x->value_len) && !memchr(x->value, '\n', x->value_len));
        CHECK(!memchr(x->value, '\0', x->value_len));
        CHECK(x->kind <= H1_H_X_FORWARDED_HOST);
    }

    /* Cut at head_len: the same head. Cut shorter: incomplete. */
    rc2 = parse(buf, req.head_len, lim, &req2, h2, &st2);
    CHECK(rc2 == rc && req2.n_headers == req.n_headers && req2.body == req.body &&
          req2.keep_alive == req.keep_alive && req2.content_length == req.content_length &&
          req2.host_len == req.host_len && req2.path_len == req.path_len);
    rc2 = parse(buf, req.head_len - 1, lim, &req2, h2, &st2);
    CHECK(rc2 == -EAGAIN);
    rc2 = parse(buf, len / 3 < req.head_len ? len / 3 : 0, lim, &req2, h2, &st2);
    CHECK(rc2 == -EAGAIN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct h1_limits small = {512, 8, 64};
    static const struct h1_limits normal = {16384, 100, 8192};
    /* An exact-size copy, so ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    check_request(buf, size, &small);
    check_request(buf, size, &normal);
    free(buf);
    return 0;
}
