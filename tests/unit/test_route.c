/* test_route.c: domain and path matching, backend address parsing, config validation. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static struct route_table rt;

static int setup(void **state)
{
    static const rp_backend_config b1[] = {{.addr = "http://127.0.0.1:8001"}};
    static const rp_backend_config b2[] = {{.addr = "http://127.0.0.1:8002", .weight = 3},
                                           {.addr = "http://[::1]:8003/"}};
    static const rp_http_route routes[] = {
        {.path_prefix = "/", .backend = "http://127.0.0.1:9000"},
        {.path_prefix = "/api/", .backend = "http://127.0.0.1:9001"},
        {.path_prefix = "/api/v2/", .backend = "http://127.0.0.1:9002", .host_header = "v2"},
    };
    rp_domain_config d = {.domain = "api.example.com", .backends = b1, .n_backends = 1};

    (void)state;
    memset(&rt, 0, sizeof(rt));
    assert_int_equal(route_add_domain(&rt, &d), 0);
    d.domain = "*.example.com";
    d.backends = b2;
    d.n_backends = 2;
    assert_int_equal(route_add_domain(&rt, &d), 0);
    d.domain = "*.deep.example.com";
    assert_int_equal(route_add_domain(&rt, &d), 0);
    assert_int_equal(route_set_routes(&rt, routes, 3), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    route_table_fini(&rt);
    return 0;
}

static const char *match(const char *host, const char *path)
{
    struct target *t =
        route_match(&rt, host, host ? (uint32_t)strlen(host) : 0, path, (uint32_t)strlen(path));
    return t ? t->name : NULL;
}

static void test_exact_before_wildcard(void **state)
{
    (void)state;
    assert_string_equal(match("api.example.com", "/"), "api.example.com");
    assert_string_equal(match("API.EXAMPLE.COM", "/"), "api.example.com");
    assert_string_equal(match("api.example.com:8443", "/"), "api.example.com");
    assert_string_equal(match("api.example.com.", "/"), "api.example.com");
    assert_string_equal(match("www.example.com", "/"), ".example.com");
}

static void test_longest_wildcard_wins(void **state)
{
    (void)state;
    assert_string_equal(match("a.deep.example.com", "/"), ".deep.example.com");
    assert_string_equal(match("deep.example.com", "/"), ".example.com");
}

static void test_wildcard_needs_a_label(void **state)
{
    (void)state;
    /* "*.example.com" does not match example.com itself: it falls to the routes */
    assert_string_equal(match("example.com", "/x"), "/");
    assert_string_equal(match("badexample.com", "/x"), "/");
}

static void test_routes_longest_prefix(void **state)
{
    (void)state;
    assert_string_equal(match("other", "/api/v2/users"), "/api/v2/");
    assert_string_equal(match("other", "/api/v1"), "/api/");
    assert_string_equal(match("other", "/api"), "/");
    assert_string_equal(match(NULL, "/index.html"), "/");
}

static void test_no_match_without_catch_all(void **state)
{
    struct route_table t2 = {0};
    static const rp_http_route r[] = {{.path_prefix = "/api/", .backend = "http://1.2.3.4:80"}};

    (void)state;
    assert_int_equal(route_set_routes(&t2, r, 1), 0);
    assert_null(route_match(&t2, "x", 1, "/", 1));
    assert_non_null(route_match(&t2, "x", 1, "/api/x", 6));
    route_table_fini(&t2);
}

static void test_backend_parsing(void **state)
{
    struct backend be;
    static const char *bad[] = {"127.0.0.1:80",   "https://",      "http://",     "http://h:0",
                                "http://h:70000", "http://h/path", "http://[::1", "ftp://x"};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&be, 0, sizeof(be));
        assert_int_equal(route_parse_backend(bad[i], &be), -EINVAL);
        free(be.addr);
        free(be.authority);
    }
    memset(&be, 0, sizeof(be));
    assert_int_equal(route_parse_backend("http://127.0.0.1", &be), 0);
    assert_string_equal(be.authority, "127.0.0.1");
    assert_int_equal(((struct sockaddr_in *)&be.sa)->sin_port, htons(80));
    assert_false(be.tls);
    free(be.addr);
    free(be.authority);
    /* https: port 443 by default; SNI is the DNS name, never an IP literal */
    memset(&be, 0, sizeof(be));
    assert_int_equal(route_parse_backend("https://localhost", &be), 0);
    assert_true(be.tls);
    assert_string_equal(be.sni, "localhost");
    assert_int_equal(((struct sockaddr_in *)&be.sa)->sin_port, htons(443));
    free(be.addr);
    free(be.authority);
    free(be.sni);
    memset(&be, 0, sizeof(be));
    assert_int_equal(route_parse_backend("https://127.0.0.1:8443/", &be), 0);
    assert_true(be.tls);
    assert_null(be.sni);
    assert_int_equal(((struct sockaddr_in *)&be.sa)->sin_port, htons(8443));
    free(be.addr);
    free(be.authority);
    /* ... also for a bracketed IPv6 literal; a port written out is kept, even 80 */
    memset(&be, 0, sizeof(be));
    assert_int_equal(route_parse_backend("https://[::1]", &be), 0);
    assert_int_equal(((struct sockaddr_in6 *)&be.sa)->sin6_port, htons(443));
    free(be.addr);
    free(be.authority);
    memset(&be, 0, sizeof(be));
    assert_int_equal(route_parse_backend("https://127.0.0.1:80", &be), 0);
    assert_int_equal(((struct sockaddr_in *)&be.sa)->sin_port, htons(80));
    free(be.addr);
    free(be.authority);
}

static void test_domain_validation(void **state)
{
    static const rp_backend_config b[] = {{.addr = "http://127.0.0.1:1"}};
    static const rp_backend_config heavy[] = {{.addr = "http://127.0.0.1:1", .weight = 101}};
    rp_domain_config d = {.domain = "api.example.com", .backends = b, .n_backends = 1};

    (void)state;
    assert_int_equal(route_add_domain(&rt, &d), -EEXIST);
    d.domain = "API.example.com";
    assert_int_equal(route_add_domain(&rt, &d), -EEXIST);
    d.domain = "*.";
    assert_int_equal(route_add_domain(&rt, &d), -EINVAL);
    d.domain = "bad host";
    assert_int_equal(route_add_domain(&rt, &d), -EINVAL);
    d.domain = "ok.local";
    d.n_backends = 0;
    assert_int_equal(route_add_domain(&rt, &d), -EINVAL);
    d.backends = heavy;
    d.n_backends = 1;
    assert_int_equal(route_add_domain(&rt, &d), -EINVAL);
}

static void test_defaults_resolved(void **state)
{
    struct target *t = route_match(&rt, "api.example.com", 15, "/", 1);

    (void)state;
    assert_int_equal(t->connect_timeout_ms, 10000);
    assert_int_equal(t->read_timeout_ms, 30000);
    assert_int_equal(t->write_timeout_ms, 10000);
    assert_int_equal(t->idle_timeout_ms, 90000);
    assert_int_equal(t->max_retries, 2);
    assert_int_equal(t->max_idle, 32);
    assert_int_equal(t->backends[0]->weight, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_before_wildcard),
        cmocka_unit_test(test_longest_wildcard_wins),
        cmocka_unit_test(test_wildcard_needs_a_label),
        cmocka_unit_test(test_routes_longest_prefix),
        cmocka_unit_test(test_no_match_without_catch_all),
        cmocka_unit_test(test_backend_parsing),
        cmocka_unit_test(test_domain_validation),
        cmocka_unit_test(test_defaults_resolved),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
