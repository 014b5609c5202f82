/* test_h1.c: unit tests for engine/h1.c. Every parser input sits right before a PROT_NONE
 * page, so a read past the end of the buffer crashes the test instead of passing by luck. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../engine/h1.c"

/* Guarded copies made by a test, unmapped by its teardown. */
#define MAX_MAPS 256
static struct {
    void *base;
    size_t len;
} maps[MAX_MAPS];
static int n_maps;

static char *guard_copy(const void *s, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (n + page - 1) / page * page;
    char *base;

    if (data == 0)
        data = page;
    base = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(base != MAP_FAILED);
    assert_int_equal(mprotect(base + data, page, PROT_NONE), 0);
    assert_true(n_maps < MAX_MAPS);
    maps[n_maps].base = base;
    maps[n_maps].len = data + page;
    n_maps++;
    memcpy(base + data - n, s, n);
    return base + data - n;
}

static int unmap_all(void **state)
{
    (void)state;
    while (n_maps > 0) {
        n_maps--;
        munmap(maps[n_maps].base, maps[n_maps].len);
    }
    return 0;
}

static struct h1_header hdrs[64];
static const struct h1_limits def_lim = {16384, 100, 8192};

static int parse_req_lim(const char *s, size_t n, struct h1_request *req,
                         const struct h1_limits *lim, int *status)
{
    const char *b = guard_copy(s, n);

    memset(req, 0x5a, sizeof(*req));
    req->headers = hdrs;
    req->headers_cap = 64;
    *status = 0;
    return h1_parse_request(b, n, req, lim, status);
}

static int parse_req(const char *s, struct h1_request *req, int *status)
{
    return parse_req_lim(s, strlen(s), req, &def_lim, status);
}

/* The status a request is refused with, 0 if it parses, -1 if it is incomplete. */
static int req_status_lim(const char *s, const struct h1_limits *lim)
{
    struct h1_request req;
    int st, rc = parse_req_lim(s, strlen(s), &req, lim, &st);

    if (rc > 0) {
        assert_int_equal(rc, req.head_len);
        return 0;
    }
    if (rc == -EAGAIN)
        return -1;
    assert_int_equal(rc, -EBADMSG);
    return st;
}

static int req_status(const char *s)
{
    return req_status_lim(s, &def_lim);
}

static bool span_is(const char *p, uint32_t n, const char *want)
{
    return p && strlen(want) == n && memcmp(p, want, n) == 0;
}

static const struct h1_header *find_hdr(const struct h1_header *h, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (h1_span_ieq(h[i].name, h[i].name_len, name))
            return &h[i];
    return NULL;
}

/* ---- requests ---------------------------------------------------------------------------- */

static void test_req_simple_get(void **state)
{
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n";
    struct h1_request req;
    int st;

    (void)state;
    assert_int_equal(parse_req(s, &req, &st), (int)strlen(s));
    assert_int_equal(req.head_len, strlen(s));
    assert_true(span_is(req.method, req.method_len, "GET"));
    assert_int_equal(req.method_id, H1_M_GET);
    assert_true(span_is(req.target, req.target_len, "/index.html?q=1"));
    assert_true(span_is(req.path, req.path_len, "/index.html?q=1"));
    assert_ptr_equal(req.path, req.target);
    assert_true(span_is(req.host, req.host_len, "example.com"));
    assert_int_equal(req.minor, 1);
    assert_true(req.keep_alive);
    assert_int_equal(req.body, H1_BODY_NONE);
    assert_false(req.expect_continue);
    assert_int_equal(req.content_length, 0);
    assert_int_equal(req.n_headers, 2);
    assert_true(span_is(req.headers[0].name, req.headers[0].name_len, "Host"));
    assert_int_equal(req.headers[0].kind, H1_H_HOST);
    assert_false(req.headers[0].hop);
    assert_true(span_is(req.headers[1].name, req.headers[1].name_len, "User-Agent"));
    assert_true(span_is(req.headers[1].value, req.headers[1].value_len, "t"));
    assert_int_equal(req.headers[1].kind, H1_H_OTHER);
}

static void test_req_ows(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nHost:   example.com  \r\nX-A:\tv a\tl\t \r\n"
                    "X-Empty:\r\nX-Sp:    \r\nX-Obs: caf\xc3\xa9\r\n\r\n";
    struct h1_request req;
    int st;

    (void)state;
    assert_int_equal(parse_req(s, &req, &st), (int)strlen(s));
    assert_int_equal(req.n_headers, 5);
    assert_true(span_is(req.host, req.host_len, "example.com"));
    assert_true(span_is(req.headers[1].value, req.headers[1].value_len, "v a\tl"));
    assert_int_equal(req.headers[2].value_len, 0);
    assert_int_equal(req.headers[3].value_len, 0);
    assert_true(span_is(req.headers[4].value, req.headers[4].value_len, "caf\xc3\xa9"));
}

static void test_req_absolute_form(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("GET http://example.com:8080/a/b?c HTTP/1.1\r\nHost: other\r\n\r\n", &req,
                          &st) > 0);
    assert_true(span_is(req.host, req.host_len, "example.com:8080"));
    assert_true(span_is(req.path, req.path_len, "/a/b?c"));
    assert_true(span_is(req.target, req.target_len, "http://example.com:8080/a/b?c"));

    assert_true(
        parse_req("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", &req, &st) > 0);
    assert_true(span_is(req.host, req.host_len, "example.com"));
    assert_true(span_is(req.path, req.path_len, "/"));

    assert_true(parse_req("GET HTTP://[::1]:81/x HTTP/1.1\r\nHost: a\r\n\r\n", &req, &st) > 0);
    assert_true(span_is(req.host, req.host_len, "[::1]:81"));
    assert_true(span_is(req.path, req.path_len, "/x"));

    /* HTTP/1.0 may omit Host; the authority still supplies `host`. */
    assert_true(parse_req("GET http://h.example/ HTTP/1.0\r\n\r\n", &req, &st) > 0);
    assert_true(span_is(req.host, req.host_len, "h.example"));

    assert_int_equal(req_status("GET http://example.com/ HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(req_status("GET http://user@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET http://example.com?q HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET index.html HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void test_req_asterisk_and_authority_form(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &req, &st) > 0);
    assert_int_equal(req.method_id, H1_M_OPTIONS);
    assert_true(span_is(req.path, req.path_len, "*"));
    assert_int_equal(req_status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);

    assert_true(parse_req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", &req,
                          &st) > 0);
    assert_int_equal(req.method_id, H1_M_CONNECT);
    assert_true(span_is(req.host, req.host_len, "example.com:443"));
    assert_int_equal(req_status("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("CONNECT http://a:1/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void test_req_pipelined(void **state)
{
    const char *first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: b\r\n"
                    "Content-Length: 3\r\n\r\nabc";
    size_t n = strlen(s);
    const char *b = guard_copy(s, n);
    struct h1_request req = {.headers = hdrs, .headers_cap = 64};
    int st, rc;

    (void)state;
    rc = h1_parse_request(b, n, &req, &def_lim, &st);
    assert_int_equal(rc, (int)strlen(first));
    assert_true(span_is(req.path, req.path_len, "/1"));
    rc = h1_parse_request(b + rc, n - (size_t)rc, &req, &def_lim, &st);
    assert_int_equal(rc, (int)(n - strlen(first) - 3));
    assert_int_equal(req.method_id, H1_M_POST);
    assert_true(span_is(req.host, req.host_len, "b"));
    assert_int_equal(req.body, H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 3);
}

static void check_every_split(const char *s)
{
    size_t n = strlen(s);
    struct h1_request req = {.headers = hdrs, .headers_cap = 64};
    int st;

    for (size_t k = 0; k < n; k++) {
        const char *b = guard_copy(s, k);

        assert_int_equal(h1_parse_request(b, k, &req, &def_lim, &st), -EAGAIN);
        unmap_all(NULL);
    }
    assert_int_equal(h1_parse_request(guard_copy(s, n), n, &req, &def_lim, &st), (int)n);
}

static void test_req_every_split(void **state)
{
    (void)state;
    check_every_split("\r\nPOST http://x.example/p?q HTTP/1.1\r\nHost: x.example\r\n"
                      "Content-Length: 5\r\nConnection: keep-alive, X-Foo\r\nX-Foo:  bar \r\n"
                      "Expect: 100-continue\r\n\r\n");
    check_every_split("GET / HTTP/1.0\nX-A: b\n\n");
    check_every_split("PUT /u HTTP/1.1\r\nHost: [::1]:8080\r\nTransfer-Encoding: chunked\r\n\r\n");
}

static void test_req_line_endings(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("GET / HTTP/1.1\nHost: a\n\n", &req, &st) > 0);
    assert_int_equal(req.head_len, 24);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\n\n"), 0);
    assert_int_equal(req_status("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\n\rX"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\n\r"), -1);
    assert_int_equal(req_status("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), 400);

    /* A few leading empty lines are skipped and counted in head_len. */
    assert_int_equal(parse_req("\r\n\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &req, &st), 34);
    assert_true(span_is(req.target, req.target_len, "/"));
    assert_int_equal(req_status("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("\r\n"), -1);
    assert_int_equal(req_status("\r"), -1);
    assert_int_equal(req_status("\rX"), 400);
}

static void test_req_request_line(void **state)
{
    static const struct {
        const char *m;
        int id;
    } methods[] = {
        {"GET", H1_M_GET},        {"HEAD", H1_M_HEAD},     {"POST", H1_M_POST},
        {"PUT", H1_M_PUT},        {"DELETE", H1_M_DELETE}, {"OPTIONS", H1_M_OPTIONS},
        {"TRACE", H1_M_TRACE},    {"PATCH", H1_M_PATCH},   {"get", H1_M_OTHER},
        {"PROPFIND", H1_M_OTHER}, {"Get", H1_M_OTHER},     {"M-SEARCH", H1_M_OTHER},
    };
    struct h1_request req;
    char line[128];
    int st;

    (void)state;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        snprintf(line, sizeof(line), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", methods[i].m);
        assert_true(parse_req(line, &req, &st) > 0);
        assert_int_equal(req.method_id, methods[i].id);
        assert_true(span_is(req.method, req.method_len, methods[i].m));
    }
    assert_int_equal(req_status(" / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET /\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/11\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400);
    /* Targets: no CTL, DEL or non-ASCII bytes. */
    assert_int_equal(req_status("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void test_req_versions(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("GET / HTTP/1.0\r\n\r\n", &req, &st) > 0);
    assert_int_equal(req.minor, 0);
    assert_null(req.host);
    assert_false(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.2\r\nHost: a\r\n\r\n", &req, &st) > 0);
    assert_int_equal(req.minor, 1);
    assert_true(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.9\r\n\r\n", &req, &st) < 0);
    assert_int_equal(st, 400); /* treated as 1.1, so Host is required */
    assert_int_equal(req_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    assert_int_equal(req_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505);
    assert_int_equal(req_status("GET / HTTP/3.0\r\n\r\n"), 505);
    assert_int_equal(req_status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
}

static void test_req_414(void **state)
{
    struct h1_limits lim = {16384, 100, 16};
    char buf[20000];

    (void)state;
    assert_int_equal(req_status_lim("GET /234567890123456 HTTP/1.1\r\nHost: a\r\n\r\n", &lim), 0);
    assert_int_equal(req_status_lim("GET /2345678901234567 HTTP/1.1\r\nHost: a\r\n\r\n", &lim),
                     414);
    /* Found before the line is complete. */
    assert_int_equal(req_status_lim("GET /2345678901234567", &lim), 414);
    assert_int_equal(req_status_lim("GET /234567890123456", &lim), -1);

    /* Default limits: a 9000-byte target. */
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', 9000);
    buf[9005] = '\0';
    assert_int_equal(req_status(buf), 414);

    /* The head limit hit inside an over-long request line: 414 rather than 431. */
    lim = (struct h1_limits){64, 100, 32};
    memset(buf, 'A', 100);
    buf[100] = '\0';
    assert_int_equal(req_status_lim(buf, &lim), 414);
    lim = (struct h1_limits){64, 100, 100};
    assert_int_equal(req_status_lim(buf, &lim), 431);
}

static void test_req_431(void **state)
{
    struct h1_limits lim = {16384, 3, 8192};
    struct h1_request req;
    char buf[20000];
    size_t n;
    int st;

    (void)state;
    assert_int_equal(req_status_lim("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n", &lim), 0);
    assert_int_equal(
        req_status_lim("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\nD: 3\r\n\r\n", &lim), 431);
    /* Found as soon as the 4th field starts. */
    assert_int_equal(req_status_lim("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\nD", &lim), 431);

    /* The caller's array caps the count too. */
    {
        const char *s = "GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n";
        struct h1_header two[2];
        const char *b = guard_copy(s, strlen(s));

        req.headers = two;
        req.headers_cap = 2;
        assert_int_equal(h1_parse_request(b, strlen(s), &req, &def_lim, &st), -EBADMSG);
        assert_int_equal(st, 431);
    }

    /* Head bytes: the head may be exactly max_head_bytes long, not one byte more. */
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: %0100d\r\n\r\n", 0);
    lim = (struct h1_limits){(uint32_t)n, 100, 8192};
    assert_int_equal(req_status_lim(buf, &lim), 0);
    lim.max_head_bytes--;
    assert_int_equal(req_status_lim(buf, &lim), 431);
    buf[n - 1] = '\0'; /* incomplete, one byte short of the limit */
    lim.max_head_bytes++;
    assert_int_equal(req_status_lim(buf, &lim), -1);
    lim.max_head_bytes--;
    assert_int_equal(req_status_lim(buf, &lim), 431);

    /* Default limits: 17 KiB of one header. */
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(buf + n, 'x', 17 * 1024);
    buf[n + 17 * 1024] = '\0';
    assert_int_equal(req_status(buf), 431);
}

static void test_req_field_syntax(void **state)
{
    (void)state;
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[0m\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\vb\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x80\xff\r\n\r\n"), 0);

    /* NUL in a value: strlen cannot carry it, so place the bytes by hand. */
    {
        static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n";
        struct h1_request req;
        int st;

        assert_int_equal(parse_req_lim(s, sizeof(s) - 1, &req, &def_lim, &st), -EBADMSG);
        assert_int_equal(st, 400);
    }
}

/* A bad byte at every offset of a long value and target, past the word-at-a-time fast path. */
static void test_req_bad_byte_every_position(void **state)
{
    static const unsigned char bad[] = {0x00, 0x01, 0x0b, 0x1f, 0x7f, '\r'};
    static const unsigned char fine_value[] = {'\t', ' ', 0x80, 0xff, '~', '!'};
    char buf[256];
    struct h1_request req;
    int st;

    (void)state;
    for (size_t k = 0; k < 40; k++) {
        for (size_t i = 0; i < sizeof(bad); i++) {
            size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");

            memset(buf + n, 'v', 40);
            buf[n + k] = (char)bad[i];
            memcpy(buf + n + 40, "v\r\n\r\n", 6);
            assert_int_equal(parse_req_lim(buf, n + 45, &req, &def_lim, &st), -EBADMSG);
            assert_int_equal(st, 400);

            n = (size_t)snprintf(buf, sizeof(buf), "GET /");
            memset(buf + n, 't', 40);
            buf[n + k] = (char)(bad[i] == '\r' ? 0x80 : bad[i]);
            memcpy(buf + n + 40, " HTTP/1.1\r\nHost: a\r\n\r\n", 23);
            assert_int_equal(parse_req_lim(buf, n + 62, &req, &def_lim, &st), -EBADMSG);
            assert_int_equal(st, 400);
        }
        for (size_t i = 0; i < sizeof(fine_value); i++) {
            size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");

            memset(buf + n, 'v', 40);
            buf[n + k] = (char)fine_value[i];
            memcpy(buf + n + 40, "v\r\n\r\n", 6);
            assert_int_equal(parse_req_lim(buf, n + 45, &req, &def_lim, &st), (int)(n + 45));
            /* OWS at the start of the value is not part of it. */
            assert_int_equal(req.headers[1].value_len, k == 0 && i < 2 ? 40 : 41);
        }
        unmap_all(NULL);
    }
}

static void test_req_host(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_int_equal(req_status("GET / HTTP/1.1\r\nX: y\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.0\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a?b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a#b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: []\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n"), 400);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a%2e\r\n\r\n"), 0);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), 0);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n\r\n"), 0);
    assert_int_equal(req_status("GET / HTTP/1.1\r\nHost: my_host.example\r\n\r\n"), 0);

    assert_true(parse_req("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n", &req, &st) > 0);
    assert_true(span_is(req.host, req.host_len, "[2001:db8::1]:8443"));
    /* An empty Host is what a client sends for a target with no authority (RFC 9112 3.2). */
    assert_true(parse_req("GET / HTTP/1.1\r\nHost:\r\n\r\n", &req, &st) > 0);
    assert_non_null(req.host);
    assert_int_equal(req.host_len, 0);
}

static void test_req_content_length(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", &req, &st) >
                0);
    assert_int_equal(req.body, H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 42);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &req, &st) >
                0);
    assert_int_equal(req.body, H1_BODY_NONE);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n"
                          "\r\n",
                          &req, &st) > 0);
    assert_int_equal(req.content_length, 5);
    assert_true(
        parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7 ,7,  7\r\n\r\n", &req, &st) > 0);
    assert_int_equal(req.content_length, 7);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n"
                          "\r\n",
                          &req, &st) > 0);
    assert_int_equal(req.content_length, INT64_MAX);

    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                "Content-Length: 6\r\n\r\n"),
                     400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808"
                                "\r\n\r\n"),
                     400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                                "99999999999999999999999\r\n\r\n"),
                     400);
}

static void test_req_transfer_encoding(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &req,
                          &st) > 0);
    assert_int_equal(req.body, H1_BODY_CHUNKED);
    assert_true(req.headers[1].hop);
    assert_int_equal(req.headers[1].kind, H1_H_TRANSFER_ENCODING);
    assert_int_equal(
        req_status("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  CHUNKED \r\n\r\n"), 0);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked,\r\n"
                                "\r\n"),
                     0);

    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"),
                     400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                "Content-Length: 5\r\n\r\n"),
                     400);
    assert_int_equal(
        req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400);
    assert_int_equal(
        req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-gzip\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"),
                     501);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n"
                                "\r\n"),
                     501);
    assert_int_equal(
        req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"),
                     400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
                     400);
    assert_int_equal(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), 400);
    assert_int_equal(
        req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), 400);
    assert_int_equal(
        req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400);
    assert_int_equal(req_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

static void test_req_keep_alive(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &req, &st) > 0);
    assert_true(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &req, &st) > 0);
    assert_false(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                          &req, &st) > 0);
    assert_false(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.0\r\n\r\n", &req, &st) > 0);
    assert_false(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req, &st) > 0);
    assert_true(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.0\r\nConnection: x\r\nConnection: ,Keep-Alive ,\r\n\r\n",
                          &req, &st) > 0);
    assert_true(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                          &req, &st) > 0);
    assert_false(req.keep_alive);
    assert_true(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", &req, &st) >
                0);
    assert_true(req.keep_alive);
}

static void test_req_hop_and_kinds(void **state)
{
    const char *s =
        "GET / HTTP/1.1\r\nhost: a\r\nCONTENT-LENGTH: 0\r\nConnection: X-Foo, "
        "x-forwarded-for\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\n"
        "Trailer: X-T\r\nUpgrade: h2c\r\nExpect: 100-CONTINUE\r\nX-Forwarded-For: 1.2.3.4\r\n"
        "X-FORWARDED-PROTO: http\r\nx-forwarded-host: a\r\nx-foo: 1\r\nX-Bar: 2\r\n\r\n";
    static const struct {
        const char *name;
        int kind;
        bool hop;
    } want[] = {
        {"host", H1_H_HOST, false},
        {"content-length", H1_H_CONTENT_LENGTH, false},
        {"connection", H1_H_CONNECTION, true},
        {"keep-alive", H1_H_KEEP_ALIVE, true},
        {"proxy-connection", H1_H_PROXY_CONNECTION, true},
        {"te", H1_H_TE, true},
        {"trailer", H1_H_TRAILER, true},
        {"upgrade", H1_H_UPGRADE, true},
        {"expect", H1_H_EXPECT, false},
        {"x-forwarded-for", H1_H_X_FORWARDED_FOR, true}, /* named in Connection */
        {"x-forwarded-proto", H1_H_X_FORWARDED_PROTO, false},
        {"x-forwarded-host", H1_H_X_FORWARDED_HOST, false},
        {"x-foo", H1_H_OTHER, true}, /* named in Connection */
        {"x-bar", H1_H_OTHER, false},
    };
    struct h1_request req;
    int st;

    (void)state;
    assert_true(parse_req(s, &req, &st) > 0);
    assert_int_equal(req.n_headers, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_true(h1_span_ieq(req.headers[i].name, req.headers[i].name_len, want[i].name));
        assert_int_equal(req.headers[i].kind, want[i].kind);
        assert_int_equal(req.headers[i].hop, want[i].hop);
    }
    assert_true(req.expect_continue);

    /* Transfer-Encoding and near-miss names. */
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE2: x\r\n"
                          "Hosts: y\r\nUpgrade-Insecure-Requests: 1\r\n\r\n",
                          &req, &st) > 0);
    assert_true(find_hdr(req.headers, req.n_headers, "transfer-encoding")->hop);
    assert_int_equal(find_hdr(req.headers, req.n_headers, "te2")->kind, H1_H_OTHER);
    assert_int_equal(find_hdr(req.headers, req.n_headers, "hosts")->kind, H1_H_OTHER);
    assert_false(find_hdr(req.headers, req.n_headers, "upgrade-insecure-requests")->hop);
}

static void test_req_expect(void **state)
{
    struct h1_request req;
    int st;

    (void)state;
    assert_true(
        parse_req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                  "\r\n",
                  &req, &st) > 0);
    assert_true(req.expect_continue);
    assert_true(
        parse_req("PUT / HTTP/1.1\r\nHost: a\r\nExpect:  100-Continue \r\n\r\n", &req, &st) > 0);
    assert_true(req.expect_continue);
    /* RFC 9110 10.1.1: a 100-continue from an HTTP/1.0 client is ignored. */
    assert_true(parse_req("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &req, &st) > 0);
    assert_false(req.expect_continue);
    assert_int_equal(req_status("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), 417);
    assert_int_equal(req_status("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n"),
                     417);
    assert_int_equal(req_status("PUT / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n"), 417);
    /* A framing error outranks the 417. */
    assert_int_equal(req_status("PUT / HTTP/1.1\r\nHost: a\r\nExpect: x\r\nContent-Length: 1\r\n"
                                "Content-Length: 2\r\n\r\n"),
                     400);
}

/* ---- responses --------------------------------------------------------------------------- */

static int parse_res_m(const char *s, struct h1_response *res, enum h1_method m)
{
    size_t n = strlen(s);
    const char *b = guard_copy(s, n);

    memset(res, 0x5a, sizeof(*res));
    res->headers = hdrs;
    res->headers_cap = 64;
    return h1_parse_response(b, n, res, &def_lim, m);
}

static int parse_res(const char *s, struct h1_response *res)
{
    return parse_res_m(s, res, H1_M_GET);
}

static void test_res_content_length(void **state)
{
    const char *s =
        "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello";
    struct h1_response res;

    (void)state;
    assert_int_equal(parse_res(s, &res), (int)strlen(s) - 5);
    assert_int_equal(res.head_len, strlen(s) - 5);
    assert_int_equal(res.status, 200);
    assert_true(span_is(res.reason, res.reason_len, "OK"));
    assert_int_equal(res.minor, 1);
    assert_int_equal(res.body, H1_BODY_LENGTH);
    assert_int_equal(res.content_length, 12);
    assert_true(res.keep_alive);
    assert_int_equal(res.n_headers, 2);
    assert_int_equal(res.headers[0].kind, H1_H_CONTENT_LENGTH);

    assert_true(parse_res("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_true(res.keep_alive);
    assert_true(parse_res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n",
                          &res) > 0);
    assert_int_equal(res.content_length, 3);
    assert_int_equal(
        parse_res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &res),
        -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", &res), -EBADMSG);
}

static void test_res_chunked(void **state)
{
    struct h1_response res;

    (void)state;
    assert_true(parse_res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_CHUNKED);
    assert_true(res.keep_alive);
    assert_true(res.headers[0].hop);

    /* Both: chunked wins, and the connection is not reused. */
    assert_true(parse_res("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n",
                          &res) > 0);
    assert_int_equal(res.body, H1_BODY_CHUNKED);
    assert_false(res.keep_alive);
    assert_true(parse_res("HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n",
                          &res) > 0);
    assert_int_equal(res.body, H1_BODY_CHUNKED);
    assert_false(res.keep_alive);

    /* A final coding other than chunked: the body runs until close. */
    assert_true(parse_res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_UNTIL_CLOSE);
    assert_false(res.keep_alive);
    assert_true(parse_res("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
                          &res) > 0);
    assert_int_equal(res.body, H1_BODY_UNTIL_CLOSE);
    assert_false(res.keep_alive);
}

static void test_res_no_body(void **state)
{
    struct h1_response res;

    (void)state;
    assert_true(parse_res_m("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", &res, H1_M_HEAD) >
                0);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_int_equal(res.content_length, 1234);
    assert_true(res.keep_alive);
    assert_true(
        parse_res_m("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &res, H1_M_HEAD) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_true(parse_res_m("HTTP/1.1 200 OK\r\n\r\n", &res, H1_M_HEAD) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_true(res.keep_alive);

    assert_true(parse_res("HTTP/1.1 204 No Content\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_true(res.keep_alive);
    assert_true(parse_res("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_int_equal(res.content_length, 99);

    /* 2xx to CONNECT opens a tunnel. */
    assert_true(parse_res_m("HTTP/1.1 200 Connection established\r\n\r\n", &res, H1_M_CONNECT) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
}

static void test_res_1xx(void **state)
{
    const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct h1_response res;

    (void)state;
    assert_int_equal(parse_res(s, &res), 25);
    assert_int_equal(res.status, 100);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_true(parse_res("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n\r\n",
                          &res) > 0);
    assert_int_equal(res.status, 101);
    assert_int_equal(res.body, H1_BODY_NONE);
    assert_true(res.headers[0].hop);
    assert_true(parse_res("HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_NONE);
}

static void test_res_until_close(void **state)
{
    struct h1_response res;

    (void)state;
    assert_true(parse_res("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_UNTIL_CLOSE);
    assert_false(res.keep_alive);
    assert_true(parse_res("HTTP/1.0 200 OK\r\n\r\n", &res) > 0);
    assert_int_equal(res.body, H1_BODY_UNTIL_CLOSE);
    assert_false(res.keep_alive);
}

static void test_res_keep_alive(void **state)
{
    struct h1_response res;

    (void)state;
    assert_true(parse_res("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &res) > 0);
    assert_false(res.keep_alive);
    assert_true(parse_res("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
                          &res) > 0);
    assert_true(res.keep_alive);
    assert_true(
        parse_res(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close, X-Y\r\nX-Y: 1\r\n\r\n",
            &res) > 0);
    assert_false(res.keep_alive);
    assert_true(res.headers[1].hop);
    assert_true(res.headers[2].hop);
    assert_false(res.headers[0].hop);
    /* Chunked in HTTP/1.0 is decoded but the connection is not reused (RFC 9112 6.1). */
    assert_true(parse_res("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive"
                          "\r\n\r\n",
                          &res) > 0);
    assert_int_equal(res.body, H1_BODY_CHUNKED);
    assert_false(res.keep_alive);
}

static void test_res_status_line(void **state)
{
    struct h1_response res;

    (void)state;
    assert_true(parse_res("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", &res) > 0);
    assert_int_equal(res.status, 404);
    assert_int_equal(res.reason_len, 0);
    assert_true(parse_res("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", &res) > 0);
    assert_int_equal(res.reason_len, 0);
    assert_true(parse_res("HTTP/1.1 500 Oops \tbad\xff\r\nContent-Length: 0\r\n\r\n", &res) > 0);
    assert_true(span_is(res.reason, res.reason_len, "Oops \tbad\xff"));
    assert_true(parse_res("HTTP/1.2 200 OK\nContent-Length: 0\n\n", &res) > 0);
    assert_int_equal(res.minor, 1);

    assert_int_equal(parse_res("HTTP/1.1 2000 OK\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 20 OK\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 099 X\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 600 X\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/2.0 200 OK\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1  200 OK\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("ICY 200 OK\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 O\x01K\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 OK\rX\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", &res), -EBADMSG);
    assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nX: \x7f\r\n\r\n", &res), -EBADMSG);
}

static void test_res_every_split_and_limits(void **state)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\n";
    size_t n = strlen(s);
    struct h1_response res = {.headers = hdrs, .headers_cap = 64};
    struct h1_limits lim = {(uint32_t)n, 2, 100};

    (void)state;
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(h1_parse_response(guard_copy(s, k), k, &res, &def_lim, H1_M_GET), -EAGAIN);
        unmap_all(NULL);
    }
    assert_int_equal(h1_parse_response(guard_copy(s, n), n, &res, &lim, H1_M_GET), (int)n);
    lim.max_head_bytes--;
    assert_int_equal(h1_parse_response(guard_copy(s, n), n, &res, &lim, H1_M_GET), -EBADMSG);
    lim = (struct h1_limits){16384, 1, 100};
    assert_int_equal(h1_parse_response(guard_copy(s, n), n, &res, &lim, H1_M_GET), -EBADMSG);
}

/* ---- chunked ----------------------------------------------------------------------------- */

struct ck_result {
    ssize_t rc;
    size_t consumed;
    bool done;
    char out[4096];
    size_t out_len;
};

/* Feeds s in pieces of `step` bytes (0: all at once), each piece in its own guarded buffer. */
static void ck_feed(const char *s, size_t n, size_t step, struct ck_result *r)
{
    struct h1_chunked c = {0};
    size_t off = 0;

    memset(r, 0, sizeof(*r));
    if (step == 0)
        step = n ? n : 1;
    do {
        size_t k = n - off < step ? n - off : step, ol = 0;
        const char *b = guard_copy(s + off, k);
        ssize_t rc = h1_chunked_feed(&c, b, k, r->out + r->out_len, &ol, &r->done);

        r->rc = rc;
        if (rc < 0)
            break;
        assert_true((size_t)rc <= k);
        assert_true(ol <= (size_t)rc);
        r->out_len += ol;
        r->consumed += (size_t)rc;
        off += k;
        if (r->done || (size_t)rc < k)
            break;
        unmap_all(NULL);
    } while (off < n);
    unmap_all(NULL);
}

static ssize_t ck_whole(const char *s, struct ck_result *r)
{
    ck_feed(s, strlen(s), 0, r);
    return r->rc < 0 ? r->rc : (ssize_t)r->consumed;
}

static void test_chunked_normal(void **state)
{
    const char *s = "5\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n";
    struct ck_result r;

    (void)state;
    assert_int_equal(ck_whole(s, &r), (ssize_t)strlen(s));
    assert_true(r.done);
    assert_int_equal(r.out_len, 21);
    assert_memory_equal(r.out, "hello world0123456789", 21);
    assert_int_equal(ck_whole("0\r\n\r\n", &r), 5);
    assert_true(r.done);
    assert_int_equal(r.out_len, 0);
    assert_int_equal(ck_whole("000000000000000f\r\n0123456789abcde\r\n0\r\n\r\n", &r), 40);
    assert_int_equal(r.out_len, 15);
    assert_int_equal(ck_whole("5\r\nhel", &r), 6);
    assert_false(r.done);
    assert_int_equal(r.out_len, 3);
}

static void test_chunked_extensions(void **state)
{
    const char *s = "5;name=value;x=\"q d\"\r\nhello\r\n1 ;a\r\n!\r\n0;last\t=\"1\"\r\n\r\n";
    struct ck_result r;
    char big[8192];
    size_t n;

    (void)state;
    assert_int_equal(ck_whole(s, &r), (ssize_t)strlen(s));
    assert_true(r.done);
    assert_memory_equal(r.out, "hello!", 6);
    assert_int_equal(ck_whole("5 \r\nhello\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5;a\x01\r\nhello\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5;a\x7f\r\nhello\r\n0\r\n\r\n", &r), -EBADMSG);

    /* The whole size line may be 4096 bytes, not more. */
    big[0] = '1';
    big[1] = ';';
    memset(big + 2, 'e', 4094);
    n = 4096;
    memcpy(big + n, "\r\nx\r\n0\r\n\r\n", 11);
    assert_int_equal(ck_whole(big, &r), (ssize_t)(n + 10));
    assert_true(r.done);
    big[2] = 'e';
    memset(big + 2, 'e', 4095);
    memcpy(big + 4097, "\r\nx\r\n0\r\n\r\n", 11);
    assert_int_equal(ck_whole(big, &r), -EBADMSG);
}

static void test_chunked_trailers(void **state)
{
    const char *s = "3\r\nabc\r\n0\r\nX-Checksum: 123\r\nX-Other:\tv \r\n\r\nNEXT";
    struct ck_result r;
    char big[20000];
    size_t n;

    (void)state;
    assert_int_equal(ck_whole(s, &r), (ssize_t)strlen(s) - 4);
    assert_true(r.done);
    assert_int_equal(r.out_len, 3);
    assert_int_equal(ck_whole("0\r\n X: y\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\nX y\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\nX : y\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\n: y\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\nX: y\x01\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\nX: y\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\nX: y\r\n\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\nX: y\rz\r\n\r\n", &r), -EBADMSG);

    /* The trailer section may be 16 KiB, not more. */
    n = (size_t)snprintf(big, sizeof(big), "0\r\nX: ");
    memset(big + n, 'v', 16384 - 7);
    n += 16384 - 7;
    memcpy(big + n, "\r\n\r\n", 5);
    assert_int_equal(ck_whole(big, &r), 16384 + 3);
    assert_true(r.done);
    memcpy(big + n, "v\r\n\r\n", 6);
    assert_int_equal(ck_whole(big, &r), -EBADMSG);
}

static void test_chunked_byte_at_a_time(void **state)
{
    static const char *const inputs[] = {
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n",
        "3\r\nabc\r\n0;x\r\n\r\n",
        "3\r\nabc\r\nZ\r\n",
        "3\r\nabc\n",
    };
    struct ck_result whole, bytes, split;

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t n = strlen(inputs[i]);

        ck_feed(inputs[i], n, 0, &whole);
        ck_feed(inputs[i], n, 1, &bytes);
        assert_int_equal(bytes.rc < 0, whole.rc < 0);
        if (whole.rc < 0)
            continue;
        assert_int_equal(bytes.consumed, whole.consumed);
        assert_int_equal(bytes.done, whole.done);
        assert_int_equal(bytes.out_len, whole.out_len);
        assert_memory_equal(bytes.out, whole.out, whole.out_len);
        for (size_t k = 1; k < n; k++) {
            ck_feed(inputs[i], n, k, &split);
            assert_int_equal(split.consumed, whole.consumed);
            assert_int_equal(split.out_len, whole.out_len);
            assert_memory_equal(split.out, whole.out, whole.out_len);
        }
    }
}

static void test_chunked_in_place(void **state)
{
    const char *s = "4\r\nWiki\r\n7;e=1\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\n\r\nrest";
    size_t n = strlen(s), ol = 0;
    char *b = guard_copy(s, n);
    struct h1_chunked c = {0};
    bool done = false;
    ssize_t rc;

    (void)state;
    rc = h1_chunked_feed(&c, b, n, b, &ol, &done);
    assert_int_equal(rc, (ssize_t)n - 4);
    assert_true(done);
    assert_int_equal(ol, 22);
    assert_memory_equal(b, "Wikipedia in \r\nchunks.", 22);
    /* Fed again once done: nothing more belongs to the body. */
    rc = h1_chunked_feed(&c, b + n - 4, 4, NULL, &ol, &done);
    assert_int_equal(rc, 0);
    assert_true(done);
    assert_int_equal(ol, 0);
}

static void test_chunked_errors(void **state)
{
    struct ck_result r;

    (void)state;
    assert_int_equal(ck_whole("g\r\nx\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole(";x\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("-1\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0x5\r\nhello\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("00000000000000005\r\nhello\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("fffffffffffffffff\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("ffffffffffffffff\r\n", &r), 18); /* 16 digits: fine */
    assert_false(r.done);
    assert_int_equal(ck_whole("5\r\nhelloX\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\r\nhello\r\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\r\nhello0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\nhello\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\r\nhello\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\r\nhello\r\n0\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\r\nhello\r\n0\r\n\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("5\rhello\r\n0\r\n\r\n", &r), -EBADMSG);
    assert_int_equal(ck_whole("0\r\n\rX", &r), -EBADMSG);

    /* Once failed, it stays failed. */
    {
        struct h1_chunked c = {0};
        size_t ol;
        bool done;

        assert_int_equal(h1_chunked_feed(&c, guard_copy("z", 1), 1, NULL, &ol, &done), -EBADMSG);
        assert_int_equal(h1_chunked_feed(&c, guard_copy("0\r\n\r\n", 5), 5, NULL, &ol, &done),
                         -EBADMSG);
        assert_false(done);
    }
}

static void test_chunked_next_message(void **state)
{
    const char *s = "2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    struct ck_result r;

    (void)state;
    assert_int_equal(ck_whole(s, &r), 12);
    assert_true(r.done);
    assert_memory_equal(r.out, "hi", 2);
    ck_feed(s, strlen(s), 1, &r);
    assert_int_equal(r.consumed, 12);
    ck_feed(s, strlen(s), 5, &r);
    assert_int_equal(r.consumed, 12);
    assert_int_equal(r.out_len, 2);
}

/* ---- small helpers ----------------------------------------------------------------------- */

static void test_span_ieq(void **state)
{
    (void)state;
    assert_true(h1_span_ieq("Content-Length", 14, "content-length"));
    assert_true(h1_span_ieq("", 0, ""));
    assert_false(h1_span_ieq("Content-Lengt", 13, "content-length"));
    assert_false(h1_span_ieq("Content-Lengthx", 15, "content-length"));
    assert_false(h1_span_ieq("Content_Length", 14, "content-length"));
    assert_true(h1_span_ieq("HOST", 4, "host"));
    assert_false(h1_span_ieq("HOST", 3, "host"));
}

static void test_reason(void **state)
{
    static const struct {
        int code;
        const char *reason;
    } want[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {305, "Use Proxy"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {0, "Unknown"},
        {-1, "Unknown"},
        {99, "Unknown"},
        {102, "Unknown"},
        {306, "Unknown"},
        {418, "Unknown"},
        {432, "Unknown"},
        {506, "Unknown"},
        {600, "Unknown"},
        {99999, "Unknown"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(h1_reason(want[i].code), want[i].reason);
}

#define T(f) cmocka_unit_test_teardown(f, unmap_all)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_req_simple_get),
        T(test_req_ows),
        T(test_req_absolute_form),
        T(test_req_asterisk_and_authority_form),
        T(test_req_pipelined),
        T(test_req_every_split),
        T(test_req_line_endings),
        T(test_req_request_line),
        T(test_req_versions),
        T(test_req_414),
        T(test_req_431),
        T(test_req_field_syntax),
        T(test_req_bad_byte_every_position),
        T(test_req_host),
        T(test_req_content_length),
        T(test_req_transfer_encoding),
        T(test_req_keep_alive),
        T(test_req_hop_and_kinds),
        T(test_req_expect),
        T(test_res_content_length),
        T(test_res_chunked),
        T(test_res_no_body),
        T(test_res_1xx),
        T(test_res_until_close),
        T(test_res_keep_alive),
        T(test_res_status_line),
        T(test_res_every_split_and_limits),
        T(test_chunked_normal),
        T(test_chunked_extensions),
        T(test_chunked_trailers),
        T(test_chunked_byte_at_a_time),
        T(test_chunked_in_place),
        T(test_chunked_errors),
        T(test_chunked_next_message),
        T(test_span_ieq),
        T(test_reason),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
