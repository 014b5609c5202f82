/* test_hooks.c: header-list edits (what hooks may change and what they may not), answers
 * built by the proxy, local endpoint patterns, matching and parameters. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hooks.h"
#include "internal.h"

static struct h1_header hdr(const char *n, const char *v, uint8_t kind, bool hop)
{
    return (struct h1_header){n, v, (uint32_t)strlen(n), (uint32_t)strlen(v), kind, hop};
}

static bool get_is(const rp_headers *h, const char *name, const char *want)
{
    rp_str v;
    return rp_headers_get(h, name, &v) && v.len == strlen(want) && !memcmp(v.p, want, v.len);
}

static void test_reads_skip_hop_by_hop(void **state)
{
    struct h1_header f[] = {hdr("Connection", "close", H1_H_CONNECTION, true),
                            hdr("Accept", "*/*", H1_H_OTHER, false),
                            hdr("X-A", "1", H1_H_OTHER, false)};
    struct rp_headers h;
    rp_str n, v;

    (void)state;
    hdrs_init(&h, f, 3, HDRS_REQUEST);
    assert_int_equal(rp_headers_count(&h), 2);
    assert_true(rp_headers_at(&h, 0, &n, &v));
    assert_int_equal(n.len, 6);
    assert_memory_equal(n.p, "Accept", 6);
    assert_true(rp_headers_at(&h, 1, &n, &v));
    assert_memory_equal(v.p, "1", 1);
    assert_false(rp_headers_at(&h, 2, &n, &v));
    assert_false(rp_headers_get(&h, "connection", NULL));
    assert_true(get_is(&h, "x-a", "1"));
    assert_null(h.v); /* reading copies nothing */
    hdrs_fini(&h);
}

static void test_add_set_remove(void **state)
{
    struct h1_header f[] = {hdr("X-A", "1", H1_H_OTHER, false), hdr("x-a", "2", H1_H_OTHER, false),
                            hdr("Keep-Alive", "5", H1_H_KEEP_ALIVE, true),
                            hdr("X-B", "b", H1_H_OTHER, false)};
    struct rp_headers h;
    uint32_t n;
    const struct h1_header *out;

    (void)state;
    hdrs_init(&h, f, 4, HDRS_REQUEST);
    assert_int_equal(rp_headers_set(&h, "X-A", "  3 \t"), 0);
    assert_int_equal(rp_headers_count(&h), 2);
    assert_true(get_is(&h, "X-A", "3")); /* outer whitespace trimmed */
    assert_int_equal(rp_headers_add(&h, "X-C", "c"), 0);
    assert_int_equal(rp_headers_add(&h, "X-C", ""), 0);
    assert_int_equal(rp_headers_remove(&h, "x-c"), 2);
    assert_int_equal(rp_headers_remove(&h, "x-missing"), 0);
    out = hdrs_fields(&h, &n);
    /* the hop-by-hop field stays in the array (the writer drops it); order kept */
    assert_int_equal(n, 3);
    assert_memory_equal(out[0].name, "Keep-Alive", 10);
    assert_true(out[0].hop);
    assert_memory_equal(out[1].name, "X-B", 3);
    assert_memory_equal(out[2].name, "X-A", 3);
    /* the parsed array was not touched */
    assert_memory_equal(f[0].value, "1", 1);
    hdrs_fini(&h);
}

static void test_protected_and_invalid(void **state)
{
    struct rp_headers req, resp;

    (void)state;
    hdrs_init(&req, NULL, 0, HDRS_REQUEST);
    hdrs_init(&resp, NULL, 0, HDRS_RESPONSE);
    const char *framing[] = {
        "Content-Length", "transfer-encoding", "Connection",      "Keep-Alive", "TE",
        "Trailer",        "Upgrade",           "Proxy-Connection"};
    for (size_t i = 0; i < sizeof(framing) / sizeof(*framing); i++) {
        assert_int_equal(rp_headers_set(&req, framing[i], "x"), -EPERM);
        assert_int_equal(rp_headers_add(&resp, framing[i], "x"), -EPERM);
        assert_int_equal(rp_headers_remove(&resp, framing[i]), -EPERM);
    }
    const char *req_only[] = {"Host", "Expect", "X-Forwarded-For", "X-Forwarded-Proto",
                              "X-Forwarded-Host"};
    for (size_t i = 0; i < sizeof(req_only) / sizeof(*req_only); i++) {
        assert_int_equal(rp_headers_set(&req, req_only[i], "x"), -EPERM);
        assert_int_equal(rp_headers_set(&resp, req_only[i], "x"), 0);
    }
    assert_int_equal(rp_headers_add(&req, "X-Bad", "a\r\nInjected: 1"), -EINVAL);
    assert_int_equal(rp_headers_add(&req, "X-Bad", "a\nb"), -EINVAL);
    assert_int_equal(rp_headers_add(&req, "Bad Name", "v"), -EINVAL);
    assert_int_equal(rp_headers_add(&req, "Bad:Name", "v"), -EINVAL);
    assert_int_equal(rp_headers_add(&req, "", "v"), -EINVAL);
    assert_int_equal(rp_headers_add(&req, NULL, "v"), -EINVAL);
    assert_int_equal(rp_headers_count(&req), 0);
    hdrs_fini(&req);
    hdrs_fini(&resp);
}

static void test_limits(void **state)
{
    struct rp_headers h;
    char big[HDRS_ARENA];
    int i;

    (void)state;
    hdrs_init(&h, NULL, 0, HDRS_RESPONSE);
    for (i = 0; i < HDRS_MAX_ADDED; i++)
        assert_int_equal(rp_headers_add(&h, "X-N", "v"), 0);
    assert_int_equal(rp_headers_add(&h, "X-N", "v"), -E2BIG);
    hdrs_fini(&h);
    hdrs_init(&h, NULL, 0, HDRS_RESPONSE);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(rp_headers_add(&h, "X-Big", big), -E2BIG);
    big[HDRS_ARENA / 2] = 0;
    assert_int_equal(rp_headers_add(&h, "X-Big", big), 0);
    assert_int_equal(rp_headers_add(&h, "X-Big", big), -E2BIG);
    hdrs_fini(&h);
}

static void test_readonly(void **state)
{
    struct h1_header f[] = {hdr("X-A", "1", H1_H_OTHER, false)};
    struct rp_headers h;

    (void)state;
    hdrs_init(&h, f, 1, HDRS_READONLY);
    assert_int_equal(rp_headers_add(&h, "X-B", "2"), -EINVAL);
    assert_int_equal(rp_headers_remove(&h, "X-A"), -EINVAL);
    assert_int_equal(rp_headers_count(&h), 1);
    hdrs_fini(&h);
}

static void test_response_builder(void **state)
{
    struct rp_response r;
    char chunk[4096];

    (void)state;
    resp_init(&r, 200);
    assert_int_equal(rp_response_set_status(&r, 99), -EINVAL);
    assert_int_equal(rp_response_set_status(&r, 600), -EINVAL);
    assert_int_equal(rp_response_set_status(&r, 429), 0);
    assert_int_equal(r.status, 429);
    assert_int_equal(rp_response_printf(&r, "%d-%s", 7, "x"), 0);
    assert_int_equal(rp_response_write(&r, "yz", 2), 0);
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "7-xyz", 5);
    assert_int_equal(rp_headers_set(rp_response_headers(&r), "Content-Length", "1"), -EPERM);
    assert_int_equal(rp_headers_set(rp_response_headers(&r), "Retry-After", "3"), 0);
    memset(chunk, 'q', sizeof(chunk));
    int rc = 0;
    while (!rc)
        rc = rp_response_write(&r, chunk, sizeof(chunk));
    assert_int_equal(rc, -E2BIG);
    assert_true(r.body_len <= RESP_MAX_BODY);
    resp_fini(&r);
}

/* ---- local endpoints ------------------------------------------------------------------------ */

static void noop_handler(const rp_request *req, rp_response *resp, void *user)
{
    (void)req;
    (void)resp;
    (void)user;
}

static rp_server *server_with(const char *const *routes, size_t n)
{
    rp_server *s = rp_server_new(NULL);

    assert_non_null(s);
    for (size_t i = 0; i < n; i += 2)
        assert_int_equal(
            rp_handle(s, routes[i], routes[i + 1], noop_handler, (void *)routes[i + 1]), 0);
    return s;
}

static const struct local_route *match(rp_server *s, const char *method, const char *path,
                                       enum local_match want, struct rp_hook_ctx *ctx, char *allow)
{
    const struct local_route *r = NULL;
    char dummy[64];

    memset(ctx, 0, sizeof(*ctx));
    assert_int_equal(local_match(&s->hooks, method, (uint32_t)strlen(method), path,
                                 (uint32_t)strlen(path), &r, ctx, allow ? allow : dummy, 64),
                     want);
    return r;
}

static void test_pattern_validation(void **state)
{
    rp_server *s = rp_server_new(NULL);

    (void)state;
    assert_int_equal(rp_handle(s, "GET", "/a/:b", noop_handler, NULL), 0);
    assert_int_equal(rp_handle(s, "GET", "/a/:b", noop_handler, NULL), -EEXIST);
    assert_int_equal(rp_handle(s, "POST", "/a/:b", noop_handler, NULL), 0);
    assert_int_equal(rp_handle(s, "GET", "a/b", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/a//b", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/a/", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/a/:", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/a/*r/b", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/a?x", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GE T", "/x", noop_handler, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/x", NULL, NULL), -EINVAL);
    assert_int_equal(rp_handle(s, "GET", "/", noop_handler, NULL), 0);
    assert_int_equal(rp_handle(s, "GET", "/1/:a/:b/:c/:d/:e/:f/:g/:h", noop_handler, NULL), 0);
    assert_int_equal(rp_handle(s, "GET", "/1/:a/:b/:c/:d/:e/:f/:g/:h/:i", noop_handler, NULL),
                     -EINVAL);
    rp_server_free(s);
}

static void test_matching(void **state)
{
    const char *routes[] = {"GET",    "/",
                            "GET",    "/status",
                            "DELETE", "/cache/:domain",
                            "GET",    "/cache/:domain",
                            "GET",    "/cache/stats",
                            "GET",    "/files/*rest"};
    rp_server *s = server_with(routes, sizeof(routes) / sizeof(*routes));
    struct rp_hook_ctx ctx;
    char allow[64];
    const struct local_route *r;

    (void)state;
    r = match(s, "GET", "/", LOCAL_FOUND, &ctx, NULL);
    assert_string_equal(r->pattern, "/");
    r = match(s, "GET", "/status", LOCAL_FOUND, &ctx, NULL);
    assert_string_equal(r->pattern, "/status");
    match(s, "GET", "/status/x", LOCAL_NONE, &ctx, NULL);
    match(s, "GET", "/statusx", LOCAL_NONE, &ctx, NULL);
    match(s, "GET", "/cache", LOCAL_NONE, &ctx, NULL);
    match(s, "GET", "/cache/", LOCAL_NONE, &ctx, NULL); /* a parameter is never empty */
    /* a literal segment beats a parameter, whatever the order of registration */
    r = match(s, "GET", "/cache/stats", LOCAL_FOUND, &ctx, NULL);
    assert_string_equal(r->pattern, "/cache/stats");
    r = match(s, "DELETE", "/cache/stats", LOCAL_FOUND, &ctx, NULL);
    assert_string_equal(r->pattern, "/cache/:domain");
    r = match(s, "HEAD", "/cache/a.com", LOCAL_FOUND, &ctx, NULL);
    assert_string_equal(r->method, "GET");
    match(s, "PUT", "/cache/a.com", LOCAL_WRONG_METHOD, &ctx, allow);
    assert_string_equal(allow, "DELETE, GET, HEAD");
    match(s, "POST", "/status", LOCAL_WRONG_METHOD, &ctx, allow);
    assert_string_equal(allow, "GET, HEAD");
    r = match(s, "GET", "/files", LOCAL_FOUND, &ctx, NULL);
    assert_int_equal(ctx.params[0].len, 0);
    r = match(s, "GET", "/files/a/b/", LOCAL_FOUND, &ctx, NULL);
    assert_int_equal(ctx.params[0].len, 4);
    assert_memory_equal(ctx.params[0].p, "a/b/", 4);
    match(s, "GET", "/filesx", LOCAL_NONE, &ctx, NULL);
    rp_server_free(s);
}

static void test_params_decoded(void **state)
{
    const char *routes[] = {"GET", "/u/:id/:name"};
    rp_server *s = server_with(routes, 2);
    struct rp_hook_ctx ctx;
    rp_request req = {0};
    rp_str v;

    (void)state;
    match(s, "GET", "/u/42/a%20b%2Fc%zz%4", LOCAL_FOUND, &ctx, NULL);
    req.ctx_ = &ctx;
    assert_true(rp_request_param(&req, "id", &v));
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.p, "42", 2);
    assert_true(rp_request_param(&req, "name", &v));
    /* valid escapes decoded, invalid ones kept as sent */
    assert_int_equal(v.len, strlen("a b/c%zz%4"));
    assert_memory_equal(v.p, "a b/c%zz%4", v.len);
    assert_false(rp_request_param(&req, "missing", &v));
    hook_ctx_fini(&ctx);
    rp_server_free(s);
}

static bool req_hook(rp_proxy_request *pr, void *user)
{
    (void)pr;
    (void)user;
    return true;
}

static void test_registration(void **state)
{
    rp_server *s = rp_server_new(&(rp_server_config){.workers = 3});

    (void)state;
    assert_int_equal(rp_server_workers(s), 3);
    assert_int_equal(rp_on_proxy_request(s, NULL, NULL), -EINVAL);
    assert_int_equal(rp_on_proxy_request(NULL, req_hook, NULL), -EINVAL);
    assert_int_equal(rp_on_proxy_request(s, req_hook, (void *)1), 0);
    assert_int_equal(rp_on_proxy_request(s, req_hook, (void *)2), 0);
    assert_int_equal(s->hooks.req.n, 2);
    assert_ptr_equal(s->hooks.req.v[1].user, (void *)2);
    atomic_store(&s->running, 1);
    assert_int_equal(rp_on_proxy_request(s, req_hook, NULL), -EBUSY);
    assert_int_equal(rp_handle(s, "GET", "/x", noop_handler, NULL), -EBUSY);
    atomic_store(&s->running, 0);
    rp_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_skip_hop_by_hop),
        cmocka_unit_test(test_add_set_remove),
        cmocka_unit_test(test_protected_and_invalid),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_response_builder),
        cmocka_unit_test(test_pattern_validation),
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_params_decoded),
        cmocka_unit_test(test_registration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
