/* test_config.c: unit tests for engine/config.c, the daemon's configuration file loader.
 * Each case writes config text to a temp file, loads it, and checks either the structs it
 * fills or the exact "path:line: what is wrong" message; plus tables for the duration and
 * size parsers. Run under ASan+UBSan: every path, failing ones included, must free cleanly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define ERRLEN 512

/* A route, for files that test something else: a file with nothing to serve is refused. */
#define R1 "routes = ( { path_prefix = \"/\"; backend = \"http://127.0.0.1:1\"; } );\n"

/* Writes text[0..n) to a fresh temp file, loads it, removes the file. path gets its name. */
static int load_bytes(const char *text, size_t n, char path[64], struct rp_file_config *c,
                      char *err)
{
    int fd, rc;

    strcpy(path, "/tmp/rp_test_config_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    rc = rp_file_config_load(path, c, err, ERRLEN);
    unlink(path);
    return rc;
}

static int load_text(const char *text, char path[64], struct rp_file_config *c, char *err)
{
    return load_bytes(text, strlen(text), path, c, err);
}

static void load_ok(const char *text, struct rp_file_config *c)
{
    char path[64], err[ERRLEN];
    int rc = load_text(text, path, c, err);

    if (rc) {
        rp_file_config_free(c);
        fail_msg("load failed (%d): %s\n--- config ---\n%s", rc, err, text);
    }
}

struct bad {
    const char *text;
    int line;
    const char *msg; /* after "path:line: " */
};

static void expect_error(const struct bad *b)
{
    struct rp_file_config c;
    char path[64], err[ERRLEN], want[ERRLEN];
    int rc = load_text(b->text, path, &c, err);

    if (b->line)
        snprintf(want, sizeof(want), "%s:%d: %s", path, b->line, b->msg);
    else
        snprintf(want, sizeof(want), "%s: %s", path, b->msg);
    rp_file_config_free(&c);
    if (rc != -EINVAL || strcmp(err, want))
        fail_msg("rc %d\n got: %s\nwant: %s\n--- config ---\n%s", rc, err, want, b->text);
}

static void expect_errors(const struct bad *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_error(&b[i]);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- files that load ---- */

/* DESIGN.md's example, without the TLS lines (their files do not exist here). */
static const char design_example[] =
    "listen = \"0.0.0.0:8080\";            # one or a list: [\"0.0.0.0:80\", \"[::]:80\"]\n"
    "workers = 4;                        # default: online CPUs\n"
    "domains = (\n"
    "  { domain = \"api.example.com\";     # exact, or \"*.example.com\"\n"
    "    backends = ( { addr = \"http://10.0.0.1:8080\"; weight = 5; },\n"
    "                 { addr = \"http://10.0.0.2:8080\"; weight = 3; } );\n"
    "    load_balancer = \"weighted_rr\";\n"
    "    connect_timeout = \"10s\"; read_timeout = \"30s\"; write_timeout = \"10s\";\n"
    "    max_retries = 2; max_idle_conns = 32; idle_timeout = \"90s\";\n"
    "    preserve_host = false; host_header = \"\";\n"
    "    health_check = { enabled = true; path = \"/health\"; interval = \"10s\"; "
    "timeout = \"5s\";\n"
    "                     fail_threshold = 3; success_threshold = 2; };\n"
    "  }\n"
    ");\n"
    "routes = (\n"
    "  { path_prefix = \"/api/\";  backend = \"http://127.0.0.1:3000\"; },\n"
    "  { path_prefix = \"/auth/\"; backend = \"http://127.0.0.1:4000\"; "
    "host_header = \"auth.internal\"; }\n"
    ");\n"
    "cache = { default_max_age = \"5m\"; max_total_bytes = \"256MiB\"; max_entries = 10000;\n"
    "          max_entry_size = \"4MiB\"; pre_compress = true; compress_level = 6;\n"
    "          compress_min_len = 256; stale_while_revalidate = \"30s\";\n"
    "          rules = ( { path_prefix = \"/static/\"; max_age = \"24h\"; "
    "max_bytes = \"10MiB\"; } ); };\n"
    "admin = { listen = \"127.0.0.1:9901\"; };\n";

static void test_design_example(void **state)
{
    struct rp_file_config c;
    const rp_domain_config *d;

    (void)state;
    load_ok(design_example, &c);
    assert_int_equal(c.server.n_listen, 1);
    assert_string_equal(c.server.listen[0], "0.0.0.0:8080");
    assert_int_equal(c.server.workers, 4);
    assert_int_equal(c.n_domains, 1);
    d = &c.domains[0];
    assert_string_equal(d->domain, "api.example.com");
    assert_int_equal(d->n_backends, 2);
    assert_string_equal(d->backends[0].addr, "http://10.0.0.1:8080");
    assert_int_equal(d->backends[0].weight, 5);
    assert_string_equal(d->backends[1].addr, "http://10.0.0.2:8080");
    assert_int_equal(d->backends[1].weight, 3);
    assert_int_equal(d->load_balancer, RP_LB_WEIGHTED_RR);
    assert_int_equal(d->connect_timeout_ms, 10000);
    assert_int_equal(d->read_timeout_ms, 30000);
    assert_int_equal(d->write_timeout_ms, 10000);
    assert_int_equal(d->max_retries, 2);
    assert_int_equal(d->max_idle_conns, 32);
    assert_int_equal(d->idle_timeout_ms, 90000);
    assert_false(d->preserve_host);
    assert_null(d->host_header);
    assert_true(d->health_check.enabled);
    assert_string_equal(d->health_check.path, "/health");
    assert_int_equal(d->health_check.interval_ms, 10000);
    assert_int_equal(d->health_check.timeout_ms, 5000);
    assert_int_equal(d->health_check.fail_threshold, 3);
    assert_int_equal(d->health_check.success_threshold, 2);
    assert_int_equal(c.n_routes, 2);
    assert_string_equal(c.routes[0].path_prefix, "/api/");
    assert_string_equal(c.routes[0].backend, "http://127.0.0.1:3000");
    assert_null(c.routes[0].host_header);
    assert_string_equal(c.routes[1].path_prefix, "/auth/");
    assert_string_equal(c.routes[1].backend, "http://127.0.0.1:4000");
    assert_string_equal(c.routes[1].host_header, "auth.internal");
    assert_false(d->no_cache);
    assert_true(c.has_cache);
    assert_int_equal(c.cache.default_max_age_ms, 300000);
    assert_int_equal(c.cache.max_total_bytes, 256ULL << 20);
    assert_int_equal(c.cache.max_entries, 10000);
    assert_int_equal(c.cache.max_entry_size, 4ULL << 20);
    assert_true(c.cache.pre_compress);
    assert_int_equal(c.cache.compress_level, 6);
    assert_int_equal(c.cache.compress_min_len, 256);
    assert_int_equal(c.cache.stale_while_revalidate_ms, 30000);
    assert_int_equal(c.cache.compress_threads, 0);
    assert_false(c.cache.no_x_cache);
    assert_int_equal(c.cache.n_rules, 1);
    assert_string_equal(c.cache.rules[0].path_prefix, "/static/");
    assert_int_equal(c.cache.rules[0].max_age_ms, 24ULL * 3600000);
    assert_int_equal(c.cache.rules[0].max_bytes, 10ULL << 20);
    assert_int_equal(c.cache.rules[0].n_methods, 0);
    assert_null(c.cache.rules[0].methods);
    assert_int_equal(c.cache.rules[0].n_status_only, 0);
    assert_null(c.cache.rules[0].status_only);
    assert_string_equal(c.server.admin_listen, "127.0.0.1:9901");
    assert_null(c.server.admin_token);
    rp_file_config_free(&c);
    assert_null(c.priv);
    assert_null(c.domains);
    assert_false(c.has_cache);
    assert_null(c.cache.rules);
}

/* A file with one route and nothing else: every server field is the library's default. */
static void test_routes_only_is_all_defaults(void **state)
{
    struct rp_file_config c, zero;

    (void)state;
    memset(&zero, 0, sizeof(zero));
    load_ok("# nothing but a comment and a route\n" R1, &c);
    assert_memory_equal(&c.server, &zero.server, sizeof(zero.server));
    assert_int_equal(c.n_domains, 0);
    assert_int_equal(c.n_routes, 1);
    assert_string_equal(c.routes[0].backend, "http://127.0.0.1:1");
    assert_false(c.has_cache);
    assert_memory_equal(&c.cache, &zero.cache, sizeof(zero.cache));
    assert_null(c.server.admin_listen);
    assert_null(c.server.admin_token);
    rp_file_config_free(&c);
}

static void test_listen_forms(void **state)
{
    struct rp_file_config c;

    (void)state;
    load_ok("listen = [\"0.0.0.0:80\", \"[::]:80\", \"127.0.0.1:65535\", \"[::1]:1\"];\n" R1, &c);
    assert_int_equal(c.server.n_listen, 4);
    assert_string_equal(c.server.listen[0], "0.0.0.0:80");
    assert_string_equal(c.server.listen[1], "[::]:80");
    assert_string_equal(c.server.listen[2], "127.0.0.1:65535");
    assert_string_equal(c.server.listen[3], "[::1]:1");
    rp_file_config_free(&c);
    load_ok("listen = ( \"10.1.2.3:8080\", \"[fe80::1:2]:9000\" );\n" R1, &c);
    assert_int_equal(c.server.n_listen, 2);
    assert_string_equal(c.server.listen[1], "[fe80::1:2]:9000");
    rp_file_config_free(&c);
}

/* listen and listen_tls mix addresses and groups; groups are the listeners with options. */
static void test_listen_groups(void **state)
{
    struct rp_file_config c;
    const rp_listener_config *l;

    (void)state;
    load_ok("listen = ( \"0.0.0.0:80\", { addr = \"0.0.0.0:8080\"; proxy_protocol = true;\n"
            "  proxy_protocol_from = [ \"10.0.0.0/8\", \"127.0.0.1/32\", \"::1/128\" ]; },\n"
            "  \"[::]:80\", { addr = \"127.0.0.1:81\"; } );\n"
            "listen_tls = ( { addr = \"0.0.0.0:8443\"; proxy_protocol = true; }, "
            "\"0.0.0.0:443\" );\n"
            "tls = { cert = \"/etc/hostname\"; key = \"/etc/hostname\"; };\n" R1,
            &c);
    assert_int_equal(c.server.n_listen, 2);
    assert_string_equal(c.server.listen[0], "0.0.0.0:80");
    assert_string_equal(c.server.listen[1], "[::]:80");
    assert_int_equal(c.server.n_listen_tls, 1);
    assert_string_equal(c.server.listen_tls[0], "0.0.0.0:443");
    assert_int_equal(c.server.n_listeners, 3);
    l = c.server.listeners;
    assert_string_equal(l[0].addr, "0.0.0.0:8080");
    assert_false(l[0].tls);
    assert_true(l[0].proxy_protocol);
    assert_int_equal(l[0].n_proxy_protocol_from, 3);
    assert_string_equal(l[0].proxy_protocol_from[0], "10.0.0.0/8");
    assert_string_equal(l[0].proxy_protocol_from[1], "127.0.0.1/32");
    assert_string_equal(l[0].proxy_protocol_from[2], "::1/128");
    assert_string_equal(l[1].addr, "127.0.0.1:81"); /* a group without options */
    assert_false(l[1].tls);
    assert_false(l[1].proxy_protocol);
    assert_int_equal(l[1].n_proxy_protocol_from, 0);
    assert_string_equal(l[2].addr, "0.0.0.0:8443");
    assert_true(l[2].tls);
    assert_true(l[2].proxy_protocol);
    assert_null(l[2].proxy_protocol_from);
    rp_file_config_free(&c);

    /* a group alone; proxy_protocol_from as one string; listen_tls before listen */
    load_ok("listen_tls = { addr = \"[::1]:443\"; proxy_protocol = true; "
            "proxy_protocol_from = \"fe80::/10\"; };\n"
            "listen = { addr = \"127.0.0.1:80\"; proxy_protocol = true; "
            "proxy_protocol_from = ( \"192.168.1.7\", \"::\" ); };\n"
            "tls = { cert = \"/etc/hostname\"; key = \"/etc/hostname\"; };\n" R1,
            &c);
    assert_int_equal(c.server.n_listen, 0);
    assert_int_equal(c.server.n_listen_tls, 0);
    assert_int_equal(c.server.n_listeners, 2);
    l = c.server.listeners;
    assert_string_equal(l[0].addr, "[::1]:443");
    assert_true(l[0].tls);
    assert_int_equal(l[0].n_proxy_protocol_from, 1);
    assert_string_equal(l[0].proxy_protocol_from[0], "fe80::/10");
    assert_string_equal(l[1].addr, "127.0.0.1:80");
    assert_false(l[1].tls);
    assert_int_equal(l[1].n_proxy_protocol_from, 2);
    assert_string_equal(l[1].proxy_protocol_from[1], "::");
    rp_file_config_free(&c);

    /* proxy_protocol = false is a group like a string; the admin listener may not overlap a
     * group's address, and the default listen is not there when a group is */
    load_ok("listen = ( { addr = \"127.0.0.1:80\"; proxy_protocol = false; } );\n"
            "admin = { listen = \"127.0.0.1:8080\"; };\n" R1,
            &c);
    assert_int_equal(c.server.n_listeners, 1);
    assert_false(c.server.listeners[0].proxy_protocol);
    rp_file_config_free(&c);
    load_ok("listen_tls = \"127.0.0.1:443\";\nadmin = { listen = \"127.0.0.1:8080\"; };\n"
            "tls = { cert = \"/etc/hostname\"; key = \"/etc/hostname\"; };\n" R1,
            &c);
    rp_file_config_free(&c);
}

static void test_errors_listen_groups(void **state)
{
    static const struct bad cases[] = {
        {"listen = ( \"0.0.0.0:80\",\n  { proxy_protocol = true; } );", 2,
         "listen[1]: missing required key 'addr'"},
        {"listen = ( {\n  addr = \"0.0.0.0:80\";\n  proxy = true; } );", 3,
         "listen[0]: unknown key 'proxy'"},
        {"listen = ( { addr = \"0.0.0.0:80\"; tls = true; } );", 1, "listen[0]: unknown key 'tls'"},
        {"listen = ( {\n  addr = \"localhost:80\"; } );", 2,
         "listen[0].addr: \"localhost:80\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = ( { addr = 80; } );", 1, "listen[0].addr: must be a string, got an integer"},
        {"listen = ( \"0.0.0.0:80\",\n  { addr = \"0.0.0.0:80\"; proxy_protocol = true; } );", 2,
         "listen[1].addr: \"0.0.0.0:80\" is listed twice"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true; },\n  \"0.0.0.0:80\" );", 2,
         "listen[1]: \"0.0.0.0:80\" is listed twice"},
        {"listen = ( { addr = \"0.0.0.0:80\";\n  proxy_protocol = \"yes\"; } );", 2,
         "listen[0].proxy_protocol: must be true or false, got a string"},
        {"listen = ( { addr = \"0.0.0.0:80\";\n  proxy_protocol_from = [ \"10.0.0.0/8\" ]; } );", 2,
         "listen[0].proxy_protocol_from: needs proxy_protocol = true"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = false;\n"
         "  proxy_protocol_from = [ \"10.0.0.0/8\" ]; } );",
         2, "listen[0].proxy_protocol_from: needs proxy_protocol = true"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = [ \"10.0.0.0/33\" ]; } );",
         2,
         "listen[0].proxy_protocol_from[0]: \"10.0.0.0/33\" is not an address block (want "
         "\"10.0.0.0/8\", \"::1/128\" or an address)"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = [ \"10.0.0.0/8\",\n \"example.com\" ]; } );",
         3,
         "listen[0].proxy_protocol_from[1]: \"example.com\" is not an address block (want "
         "\"10.0.0.0/8\", \"::1/128\" or an address)"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = [ \"10.1.2.3/8\" ]; } );",
         2,
         "listen[0].proxy_protocol_from[0]: \"10.1.2.3/8\" has bits set past its /8 prefix "
         "(\"10.0.0.0/8\"?)"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = [ \"::1/128\", \"::1\" ]; } );",
         2, "listen[0].proxy_protocol_from[1]: \"::1\" is listed twice"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = [ ]; } );",
         2, "listen[0].proxy_protocol_from: must not be empty"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = [ 10 ]; } );",
         2, "listen[0].proxy_protocol_from[0]: must be a string, got an integer"},
        {"listen = ( { addr = \"0.0.0.0:80\"; proxy_protocol = true;\n"
         "  proxy_protocol_from = { a = 1; }; } );",
         2,
         "listen[0].proxy_protocol_from: must be a list of address blocks [ \"10.0.0.0/8\" ], got "
         "a group"},
        {"listen = ( \"0.0.0.0:80\", ( \"0.0.0.0:81\" ) );", 1,
         "listen[1]: must be a string or a group { addr = ...; }, got a list"},
        {"listen = { proxy_protocol = true; };", 1, "listen: missing required key 'addr'"},
        {"listen_tls = ( {\n  addr = \"0.0.0.0:443\"; proxy_protocol = 1; } );\n"
         "tls = { cert = \"/etc/hostname\"; key = \"/etc/hostname\"; };",
         2, "listen_tls[0].proxy_protocol: must be true or false, got an integer"},
        {"listen_tls = ( { addr = \"0.0.0.0:443\"; proxy_protocol = true; } );", 1,
         "listen_tls: TLS listeners need a tls = { cert = ...; key = ...; } block"},
        {"listen = ( { addr = \"127.0.0.1:9901\"; proxy_protocol = true; } );\n"
         "admin = {\n  listen = \"0.0.0.0:9901\"; };",
         3, "admin.listen: \"0.0.0.0:9901\" overlaps the proxy listener \"127.0.0.1:9901\""},
        /* libconfig's arrays hold scalars of one type: groups need a list */
        {"listen = [ \"0.0.0.0:80\", { addr = \"0.0.0.0:81\"; } ];", 1, "syntax error"},
    };
    char path[64], err[ERRLEN];
    struct rp_file_config c;

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        if (strcmp(cases[i].msg, "syntax error")) {
            expect_error(&cases[i]);
            continue;
        }
        assert_int_equal(load_text(cases[i].text, path, &c, err), -EINVAL);
        assert_non_null(strstr(err, "syntax error"));
        rp_file_config_free(&c);
    }
}

static void test_server_fields(void **state)
{
    struct rp_file_config c;

    (void)state;
    load_ok("workers = 1024;\n"
            "header_timeout = \"250ms\"; keepalive_timeout = \"1m30s\";\n"
            "shutdown_timeout = \"1h\";\n"
            "max_header_bytes = \"64KiB\"; max_body_size = 3000000000L;\n"
            "max_header_count = 200; max_target_len = 16384;\n"
            "log_level = \"debug\";\n" R1,
            &c);
    assert_int_equal(c.server.workers, 1024);
    assert_int_equal(c.server.header_timeout_ms, 250);
    assert_int_equal(c.server.keepalive_timeout_ms, 90000);
    assert_int_equal(c.server.shutdown_timeout_ms, 3600000);
    assert_int_equal(c.server.max_header_bytes, 65536);
    assert_int_equal(c.server.max_body_bytes, 3000000000ULL);
    assert_int_equal(c.server.max_header_count, 200);
    assert_int_equal(c.server.max_target_len, 16384);
    assert_int_equal(c.server.log_level, 2);
    rp_file_config_free(&c);

    load_ok("max_header_bytes = 8192; max_body_size = \"1GiB\"; log_level = \"warn\";\n" R1, &c);
    assert_int_equal(c.server.max_header_bytes, 8192);
    assert_int_equal(c.server.max_body_bytes, 1ULL << 30);
    assert_int_equal(c.server.log_level, 1);
    rp_file_config_free(&c);

    load_ok("log_level = \"info\"; max_body_size = \"10MB\";\n" R1, &c);
    assert_int_equal(c.server.log_level, 0);
    assert_int_equal(c.server.max_body_bytes, 10000000);
    rp_file_config_free(&c);
}

static void test_domain_fields(void **state)
{
    struct rp_file_config c;
    const rp_domain_config *d;

    (void)state;
    load_ok("domains = (\n"
            " { domain = \"*.Example.COM\"; backends = ( { addr = \"http://app\"; } );\n"
            "   max_retries = 0; max_idle_conns = 0; preserve_host = true;\n"
            "   host_header = \"upstream.internal:8080\"; load_balancer = \"least_conn\";\n"
            "   health_check = { path = \"\"; }; },\n"
            " { domain = \"b.example.com\"; load_balancer = \"ip_hash\";\n"
            "   backends = ( { addr = \"http://[::1]:81/\"; weight = 100; },\n"
            "                { addr = \"HTTP://Backend-2.local:8080\"; weight = 1; } );\n"
            "   health_check = { enabled = false; path = \"/up\"; }; max_retries = 10;\n"
            "   max_idle_conns = 100000; },\n"
            " { domain = \"c\"; backends = ( { addr = \"http://1.2.3.4\"; } );\n"
            "   load_balancer = \"random\"; },\n"
            " { domain = \"d\"; backends = ( { addr = \"http://1.2.3.4\"; } );\n"
            "   load_balancer = \"round_robin\"; }\n"
            ");\n",
            &c);
    assert_int_equal(c.n_domains, 4);
    d = &c.domains[0];
    assert_string_equal(d->domain, "*.example.com");
    assert_int_equal(d->n_backends, 1);
    assert_string_equal(d->backends[0].addr, "http://app");
    assert_int_equal(d->backends[0].weight, 1);
    assert_int_equal(d->max_retries, RP_NO_RETRIES);
    assert_int_equal(d->max_idle_conns, -1);
    assert_true(d->preserve_host);
    assert_string_equal(d->host_header, "upstream.internal:8080");
    assert_int_equal(d->load_balancer, RP_LB_LEAST_CONN);
    assert_true(d->health_check.enabled); /* the group's presence turns checks on */
    assert_string_equal(d->health_check.path, "");
    assert_int_equal(d->connect_timeout_ms, 0);
    d = &c.domains[1];
    assert_int_equal(d->load_balancer, RP_LB_IP_HASH);
    assert_string_equal(d->backends[0].addr, "http://[::1]:81/");
    assert_int_equal(d->backends[0].weight, 100);
    assert_string_equal(d->backends[1].addr, "HTTP://Backend-2.local:8080");
    assert_false(d->health_check.enabled);
    assert_int_equal(d->max_retries, 10);
    assert_int_equal(d->max_idle_conns, 100000);
    assert_int_equal(c.domains[2].load_balancer, RP_LB_RANDOM);
    assert_int_equal(c.domains[3].load_balancer, RP_LB_ROUND_ROBIN);
    assert_false(c.domains[2].health_check.enabled);
    rp_file_config_free(&c);
}

static void test_backend_addresses_accepted(void **state)
{
    static const char *const ok[] = {
        "http://10.0.0.1:8080",    "http://10.0.0.1",       "http://10.0.0.1:8080/", "http://[::1]",
        "http://[2001:db8::1]:80", "http://localhost:3000", "http://a.b-c.d_e:1",    "http://x/",
        "http://h:65535",
    };
    char text[256];
    struct rp_file_config c;

    (void)state;
    for (size_t i = 0; i < N(ok); i++) {
        snprintf(text, sizeof(text), "routes = ( { path_prefix = \"/\"; backend = \"%s\"; } );",
                 ok[i]);
        load_ok(text, &c);
        assert_string_equal(c.routes[0].backend, ok[i]);
        rp_file_config_free(&c);
    }
}

static void test_load_string(void **state)
{
    struct rp_file_config c;
    char err[ERRLEN];

    (void)state;
    assert_int_equal(rp_file_config_load_string("workers = 3;\n" R1, "mem.conf", &c, err, ERRLEN),
                     0);
    assert_int_equal(c.server.workers, 3);
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load_string("\nworkers = 0;", "mem.conf", &c, err, ERRLEN),
                     -EINVAL);
    assert_string_equal(err, "mem.conf:2: workers: must be 1-1024, got 0");
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load_string("a = ;", "mem.conf", &c, err, ERRLEN), -EINVAL);
    assert_string_equal(err, "mem.conf:1: syntax error");
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load_string("workers = 3;", "mem.conf", &c, err, ERRLEN),
                     -EINVAL);
    assert_string_equal(err, "mem.conf: nothing to serve: no domains and no routes");
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load_string("\nworkers = 4294967297;", NULL, &c, err, ERRLEN),
                     -EINVAL);
    assert_string_equal(err, "(string):2: workers: must be 1-1024, got 4294967297");
    rp_file_config_free(&c);
}

static void test_cache_defaults(void **state)
{
    struct rp_file_config c;
    rp_cache_config zero;

    (void)state;
    memset(&zero, 0, sizeof(zero));
    load_ok("cache = {};\n" R1, &c);
    assert_true(c.has_cache);
    assert_memory_equal(&c.cache, &zero, sizeof(zero)); /* every field: the library's default */
    rp_file_config_free(&c);
    assert_false(c.has_cache);

    load_ok("cache = { rules = (); };\n" R1, &c);
    assert_true(c.has_cache);
    assert_int_equal(c.cache.n_rules, 0);
    rp_file_config_free(&c);

    /* a rule with nothing but its prefix leaves the rest to the defaults */
    load_ok("cache = { rules = ( { path_prefix = \"/\"; } ); };\n" R1, &c);
    assert_int_equal(c.cache.n_rules, 1);
    assert_string_equal(c.cache.rules[0].path_prefix, "/");
    assert_int_equal(c.cache.rules[0].max_age_ms, 0);
    assert_int_equal(c.cache.rules[0].max_bytes, 0);
    assert_int_equal(c.cache.rules[0].n_methods, 0);
    assert_int_equal(c.cache.rules[0].n_status_only, 0);
    rp_file_config_free(&c);
}

static void test_cache_fields(void **state)
{
    struct rp_file_config c;
    const rp_cache_rule *r;

    (void)state;
    load_ok("cache = { default_max_age = \"1h30m\"; max_total_bytes = \"1GiB\";\n"
            "  max_entries = 4000000000L; max_entry_size = 1048576; pre_compress = true;\n"
            "  compress_level = 12; compress_min_len = \"1KiB\";\n"
            "  stale_while_revalidate = \"250ms\"; compress_threads = 64; x_cache = false;\n"
            "  rules = (\n"
            "    { path_prefix = \"/static/\"; max_age = \"24h\"; max_bytes = \"10MiB\";\n"
            "      methods = [ \"GET\", \"HEAD\" ]; status_only = [ 200, 301 ]; },\n"
            "    { path_prefix = \"/api/v1/\"; methods = ( \"HEAD\" );\n"
            "      status_only = ( 599, 404, 200 ); max_age = \"1193h\"; },\n"
            "    { path_prefix = \"/static/img/\"; max_bytes = 1; }\n"
            "  ); };\n" R1,
            &c);
    assert_true(c.has_cache);
    assert_int_equal(c.cache.default_max_age_ms, 5400000);
    assert_int_equal(c.cache.max_total_bytes, 1ULL << 30);
    assert_int_equal(c.cache.max_entries, 4000000000U);
    assert_int_equal(c.cache.max_entry_size, 1048576);
    assert_true(c.cache.pre_compress);
    assert_int_equal(c.cache.compress_level, 12);
    assert_int_equal(c.cache.compress_min_len, 1024);
    assert_int_equal(c.cache.stale_while_revalidate_ms, 250);
    assert_int_equal(c.cache.compress_threads, 64);
    assert_true(c.cache.no_x_cache);
    assert_int_equal(c.cache.n_rules, 3);
    r = &c.cache.rules[0];
    assert_string_equal(r->path_prefix, "/static/");
    assert_int_equal(r->max_age_ms, 86400000);
    assert_int_equal(r->max_bytes, 10ULL << 20);
    assert_int_equal(r->n_methods, 2);
    assert_string_equal(r->methods[0], "GET");
    assert_string_equal(r->methods[1], "HEAD");
    assert_int_equal(r->n_status_only, 2);
    assert_int_equal(r->status_only[0], 200);
    assert_int_equal(r->status_only[1], 301);
    r = &c.cache.rules[1];
    assert_string_equal(r->path_prefix, "/api/v1/");
    assert_int_equal(r->n_methods, 1);
    assert_string_equal(r->methods[0], "HEAD");
    assert_int_equal(r->n_status_only, 3);
    assert_int_equal(r->status_only[0], 599);
    assert_int_equal(r->status_only[1], 404);
    assert_int_equal(r->status_only[2], 200);
    assert_int_equal(r->max_age_ms, 1193ULL * 3600000);
    assert_int_equal(r->max_bytes, 0);
    r = &c.cache.rules[2];
    assert_string_equal(r->path_prefix, "/static/img/");
    assert_int_equal(r->max_bytes, 1);
    assert_int_equal(r->n_methods, 0);
    rp_file_config_free(&c);

    load_ok("cache = { x_cache = true; pre_compress = false; compress_threads = 0;\n"
            "  compress_level = 1; max_entries = 1; max_total_bytes = 1;\n"
            "  max_entry_size = \"1k\"; compress_min_len = \"4294967295\"; };\n" R1,
            &c);
    assert_false(c.cache.no_x_cache);
    assert_false(c.cache.pre_compress);
    assert_int_equal(c.cache.compress_threads, 0);
    assert_int_equal(c.cache.compress_level, 1);
    assert_int_equal(c.cache.max_entries, 1);
    assert_int_equal(c.cache.max_total_bytes, 1);
    assert_int_equal(c.cache.max_entry_size, 1024);
    assert_int_equal(c.cache.compress_min_len, UINT32_MAX);
    rp_file_config_free(&c);
}

static void test_domain_cache(void **state)
{
    struct rp_file_config c;

    (void)state;
    load_ok("domains = (\n"
            " { domain = \"a\"; backends = ( { addr = \"http://h\"; } ); cache = false; },\n"
            " { domain = \"b\"; backends = ( { addr = \"http://h\"; } ); cache = true; },\n"
            " { domain = \"c\"; backends = ( { addr = \"http://h\"; } ); }\n"
            ");\ncache = {};\n",
            &c);
    assert_int_equal(c.n_domains, 3);
    assert_true(c.domains[0].no_cache);
    assert_false(c.domains[1].no_cache);
    assert_false(c.domains[2].no_cache);
    assert_true(c.has_cache);
    rp_file_config_free(&c);

    /* without a cache group it is accepted and means nothing */
    load_ok("domains = ( { domain = \"a\"; backends = ( { addr = \"http://h\"; } );"
            " cache = false; } );",
            &c);
    assert_true(c.domains[0].no_cache);
    assert_false(c.has_cache);
    rp_file_config_free(&c);
}

static void test_admin_fields(void **state)
{
    struct rp_file_config c;

    (void)state;
    load_ok("admin = { listen = \"127.0.0.1:9901\"; token = "
            "\"s3cr3t-T0ken_~!#$%&'()*+,./:;<=>?@\"; };\n" R1,
            &c);
    assert_string_equal(c.server.admin_listen, "127.0.0.1:9901");
    assert_string_equal(c.server.admin_token, "s3cr3t-T0ken_~!#$%&'()*+,./:;<=>?@");
    rp_file_config_free(&c);
    assert_null(c.server.admin_listen);

    load_ok("admin = { listen = \"[::1]:9901\"; };\n" R1, &c);
    assert_string_equal(c.server.admin_listen, "[::1]:9901");
    assert_null(c.server.admin_token);
    rp_file_config_free(&c);

    /* the same port as a proxy listener on an address that does not overlap it */
    load_ok("listen = [\"127.0.0.1:80\", \"[::]:8080\"];\n"
            "admin = { listen = \"127.0.0.2:80\"; };\n" R1,
            &c);
    assert_string_equal(c.server.admin_listen, "127.0.0.2:80");
    rp_file_config_free(&c);
    load_ok("admin = { listen = \"[::1]:8080\"; };\n" R1, &c); /* default listen is IPv4 only */
    rp_file_config_free(&c);
    load_ok("listen = \"[::1]:80\";\nadmin = { listen = \"0.0.0.0:80\"; };\n" R1, &c);
    rp_file_config_free(&c);
}

/* ---- errors ---- */

static void test_errors_top_level(void **state)
{
    static const struct bad cases[] = {
        {"workers = 4;\n\nwrokers = 4;\n", 3, "unknown key 'wrokers'"},
        {"\nlisten = \"0.0.0.0:99999\";", 2,
         "listen: \"0.0.0.0:99999\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"0.0.0.0\";", 1,
         "listen: \"0.0.0.0\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"localhost:80\";", 1,
         "listen: \"localhost:80\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"0.0.0.0:0\";", 1,
         "listen: \"0.0.0.0:0\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"::1:80\";", 1,
         "listen: \"::1:80\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"[::1]\";", 1,
         "listen: \"[::1]\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"[::1]:80x\";", 1,
         "listen: \"[::1]:80x\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = \"256.0.0.1:80\";", 1,
         "listen: \"256.0.0.1:80\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = [\"0.0.0.0:80\",\n  \"[zz]:80\"];", 2,
         "listen[1]: \"[zz]:80\" is not a valid address (want ip:port or [ip6]:port)"},
        {"listen = [\"0.0.0.0:80\",\n  \"0.0.0.0:80\"];", 2,
         "listen[1]: \"0.0.0.0:80\" is listed twice"},
        {"listen = [];", 1, "listen: must not be empty"},
        {"listen = 80;", 1,
         "listen: must be a string, a group { addr = ...; } or a list of them, got an integer"},
        {"listen = ( 80 );", 1,
         "listen[0]: must be a string or a group { addr = ...; }, got an integer"},
        {"workers = 0;", 1, "workers: must be 1-1024, got 0"},
        {"workers = 1025;", 1, "workers: must be 1-1024, got 1025"},
        {"workers = -1;", 1, "workers: must be 1-1024, got -1"},
        {"header_timeout = \"10x\";", 1,
         "header_timeout: \"10x\" is not a valid duration (e.g. \"250ms\", \"10s\", \"1m30s\")"},
        {"keepalive_timeout = \"0s\";", 1, "keepalive_timeout: must be longer than 0"},
        {"shutdown_timeout = 30;", 1,
         "shutdown_timeout: must be a duration string such as \"10s\", got an integer"},
        {"max_header_bytes = \"2MiB\";", 1,
         "max_header_bytes: must be 1-1048576 bytes, got 2097152"},
        {"max_header_bytes = 0;", 1, "max_header_bytes: must be 1-1048576 bytes, got 0"},
        {"max_body_size = -5;", 1, "max_body_size: must be 1-18446744073709551615 bytes, got -5"},
        {"max_body_size = \"5 MiB\";", 1,
         "max_body_size: \"5 MiB\" is not a valid size (e.g. 4096, \"64KiB\", \"256MiB\")"},
        {"max_body_size = 1.5;", 1,
         "max_body_size: must be a size (an integer or a string such as \"64KiB\"), got a float"},
        {"max_header_count = 0;", 1, "max_header_count: must be 1-10000, got 0"},
        {"max_target_len = 2000000;", 1, "max_target_len: must be 1-1048576, got 2000000"},
        {"log_level = \"verbose\";", 1, "log_level: \"verbose\" is not one of info, warn, debug"},
        {"log_level = 2;", 1, "log_level: must be a string, got an integer"},
        {"domains = { domain = \"a\"; };", 1,
         "domains: must be a list of groups ( { ... }, ... ), got a group"},
        {"routes = ( \"x\" );", 1, "routes[0]: must be a group { ... }, got a string"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_tls(void **state)
{
    static const struct bad cases[] = {
        {"listen_tls = \"0.0.0.0:8443\";", 1,
         "listen_tls: TLS listeners need a tls = { cert = ...; key = ...; } block"},
        {"\ntls = { cert = \"/nonexistent.pem\"; key = \"k\"; };", 2,
         "tls.cert: \"/nonexistent.pem\": cannot read: No such file or directory"},
        {"tls = { cert = \"/etc/hostname\"; };", 1, "tls: needs both cert and key"},
        {"tls = { cert = \"/etc/hostname\"; key = \"/etc/hostname\"; pass = \"x\"; };", 1,
         "tls: unknown key 'pass'"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

#define B1 "backends = ( { addr = \"http://10.0.0.1:80\"; } );"

static void test_errors_domains(void **state)
{
    static const struct bad cases[] = {
        {"domains = (\n { domain = \"a\";\n   backends = ( { addr = \"http://1.1.1.1\"; },\n"
         "     { addr = \"http://1.1.1.2\"; weight = 0; } ); } );",
         4, "domains[0].backends[1].weight: must be 1-100, got 0"},
        {"domains = ( { domain = \"a\";\n"
         "  backends = ( { addr = \"http://h\"; weight = 101; } ); } );",
         2, "domains[0].backends[0].weight: must be 1-100, got 101"},
        {"domains = (\n { " B1 " } );", 2, "domains[0]: missing required key 'domain'"},
        {"domains = (\n { domain = \"a\"; } );", 2, "domains[0]: missing required key 'backends'"},
        {"domains = ( { domain = \"a\"; backends = (); } );", 1,
         "domains[0].backends: must not be empty"},
        {"domains = ( { domain = \"a\"; backends = ( { weight = 2; } ); } );", 1,
         "domains[0].backends[0]: missing required key 'addr'"},
        {"domains = ( { domain = \"a\"; backends = ( { addr = \"http://h\"; wieght = 2; } ); } );",
         1, "domains[0].backends[0]: unknown key 'wieght'"},
        {"domains = ( { domain = \"a\"; backends = ( \"http://h\" ); } );", 1,
         "domains[0].backends[0]: must be a group { ... }, got a string"},
        {"domains = ( { domain = \"\"; " B1 " } );", 1,
         "domains[0].domain: \"\" is not a valid domain (want a host name or \"*.suffix\")"},
        {"domains = ( { domain = \"a b\"; " B1 " } );", 1,
         "domains[0].domain: \"a b\" is not a valid domain (want a host name or \"*.suffix\")"},
        {"domains = ( { domain = \"*\"; " B1 " } );", 1,
         "domains[0].domain: \"*\" is not a valid domain (want a host name or \"*.suffix\")"},
        {"domains = ( { domain = \"*.\"; " B1 " } );", 1,
         "domains[0].domain: \"*.\" is not a valid domain (want a host name or \"*.suffix\")"},
        {"domains = ( { domain = \"a..b\"; " B1 " } );", 1,
         "domains[0].domain: \"a..b\" is not a valid domain (want a host name or \"*.suffix\")"},
        {"domains = ( { domain = \"a.*.b\"; " B1 " } );", 1,
         "domains[0].domain: \"a.*.b\" is not a valid domain (want a host name or \"*.suffix\")"},
        {"domains = ( { domain = 5; " B1 " } );", 1,
         "domains[0].domain: must be a string, got an integer"},
        {"domains = (\n { domain = \"api.example.com\"; " B1 " },\n { domain = \"x\"; " B1
         " },\n { domain = \"API.Example.com\"; " B1 " } );",
         4, "domains[2].domain: duplicate domain \"api.example.com\" (first at line 2)"},
        {"domains = ( { domain = \"a\"; " B1 "\n  load_balancer = \"fastest\"; } );", 2,
         "domains[0].load_balancer: \"fastest\" is not one of round_robin, weighted_rr, "
         "least_conn, ip_hash, random, least_latency"},
        {"domains = ( { domain = \"a\"; " B1 "\n  max_retries = 11; } );", 2,
         "domains[0].max_retries: must be 0-10, got 11"},
        {"domains = ( { domain = \"a\"; " B1 "\n  max_retries = -1; } );", 2,
         "domains[0].max_retries: must be 0-10, got -1"},
        {"domains = ( { domain = \"a\"; " B1 "\n  max_idle_conns = 100001; } );", 2,
         "domains[0].max_idle_conns: must be 0-100000, got 100001"},
        {"domains = ( { domain = \"a\"; " B1 "\n  connect_timeout = \"10\"; } );", 2,
         "domains[0].connect_timeout: \"10\" is not a valid duration (e.g. \"250ms\", \"10s\", "
         "\"1m30s\")"},
        {"domains = ( { domain = \"a\"; " B1 "\n  read_timeout = 30; } );", 2,
         "domains[0].read_timeout: must be a duration string such as \"10s\", got an integer"},
        {"domains = ( { domain = \"a\"; " B1 "\n  write_timeout = \"0ms\"; } );", 2,
         "domains[0].write_timeout: must be longer than 0"},
        {"domains = ( { domain = \"a\"; " B1 "\n  idle_timeout = \"1s1s\"; } );", 2,
         "domains[0].idle_timeout: \"1s1s\" is not a valid duration (e.g. \"250ms\", \"10s\", "
         "\"1m30s\")"},
        {"domains = ( { domain = \"a\"; " B1 "\n  preserve_host = \"yes\"; } );", 2,
         "domains[0].preserve_host: must be true or false, got a string"},
        {"domains = ( { domain = \"a\"; " B1 "\n  host_header = \"a\\r\\nX: y\"; } );", 2,
         "domains[0].host_header: \"a\r\nX: y\" is not a valid Host value (no spaces or "
         "control characters)"},
        {"domains = ( { domain = \"a\"; " B1 "\n  colour = \"blue\"; } );", 2,
         "domains[0]: unknown key 'colour'"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = true; } );", 2,
         "domains[0].health_check: must be a group { ... }, got a boolean"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = {\n path = \"/h\";\n"
         " fail_threshold = 0; }; } );",
         4, "domains[0].health_check.fail_threshold: must be 1-100, got 0"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = { success_threshold = 101; };"
         " } );",
         2, "domains[0].health_check.success_threshold: must be 1-100, got 101"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = { path = \"health\"; }; } );", 2,
         "domains[0].health_check.path: \"health\" is not a valid path (want \"\" or "
         "\"/...\" without spaces)"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = { interval = \"5m3\"; }; } );", 2,
         "domains[0].health_check.interval: \"5m3\" is not a valid duration (e.g. \"250ms\", "
         "\"10s\", \"1m30s\")"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = { enabled = 1; }; } );", 2,
         "domains[0].health_check.enabled: must be true or false, got an integer"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = {\n  method = \"GET\"; }; } );", 3,
         "domains[0].health_check: unknown key 'method'"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_backend_addresses(void **state)
{
    static const struct {
        const char *addr, *msg;
    } cases[] = {
        {"https://", NULL},         {"https://h/api", NULL},
        {"10.0.0.1:80", NULL},      {"http://", NULL},
        {"http:/h", NULL},          {"ftp://h:21", NULL},
        {"http://h:0", NULL},       {"http://h:65536", NULL},
        {"http://h:", NULL},        {"http://h:8o", NULL},
        {"http://h/api", NULL},     {"http://h//", NULL},
        {"http://[::1", NULL},      {"http://[::g]:80", NULL},
        {"http://::1:80", NULL},    {"http://1.2.3:80", NULL},
        {"http://300.1.1.1", NULL}, {"http://user@h", NULL},
        {"http://h h", NULL},       {"", NULL},
    };
    char text[512], msg[256];

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        struct bad b = {text, 2, msg};
        snprintf(text, sizeof(text),
                 "domains = ( { domain = \"a\";\n backends = ( { addr = \"%s\"; } ); } );",
                 cases[i].addr);
        if (cases[i].msg)
            snprintf(msg, sizeof(msg), "domains[0].backends[0].addr: %s", cases[i].msg);
        else
            snprintf(msg, sizeof(msg),
                     "domains[0].backends[0].addr: \"%s\" is not a valid backend address "
                     "(want http://host:port, https://..., h2c://... or h2://...)",
                     cases[i].addr);
        expect_error(&b);
    }
}

static void test_errors_routes(void **state)
{
    static const struct bad cases[] = {
        {"routes = (\n { backend = \"http://h\"; } );", 2,
         "routes[0]: missing required key 'path_prefix'"},
        {"routes = (\n { path_prefix = \"/\"; } );", 2,
         "routes[0]: missing required key 'backend'"},
        {"routes = ( { path_prefix = \"api/\"; backend = \"http://h\"; } );", 1,
         "routes[0].path_prefix: \"api/\" is not a valid path prefix (want \"/...\" without "
         "spaces)"},
        {"routes = ( { path_prefix = \"/a b\"; backend = \"http://h\"; } );", 1,
         "routes[0].path_prefix: \"/a b\" is not a valid path prefix (want \"/...\" without "
         "spaces)"},
        {"routes = ( { path_prefix = \"/\"; backend = \"h:80\"; } );", 1,
         "routes[0].backend: \"h:80\" is not a valid backend address (want http://host:port, "
         "https://..., h2c://... or h2://...)"},
        {"routes = ( { path_prefix = \"/\"; backend = \"http://h\"; host_header = \"a b\"; } );", 1,
         "routes[0].host_header: \"a b\" is not a valid Host value (no spaces or control "
         "characters)"},
        {"routes = ( { path_prefix = \"/\"; backend = \"http://h\";\n weight = 1; } );", 2,
         "routes[0]: unknown key 'weight'"},
        {"routes = (\n { path_prefix = \"/a/\"; backend = \"http://h\"; },\n"
         " { path_prefix = \"/a/\"; backend = \"http://g\"; } );",
         3, "routes[1].path_prefix: duplicate path_prefix \"/a/\" (first at line 2)"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_cache(void **state)
{
    static const struct bad cases[] = {
        {"workers = 2;\ncache = true;", 2, "cache: must be a group { ... }, got a boolean"},
        {"cache = {\n  colour = 1; };", 2, "cache: unknown key 'colour'"},
        {"cache = {\n  compress_level = 0; };", 2, "cache.compress_level: must be 1-12, got 0"},
        {"cache = {\n\n  compress_level = 13; };", 3, "cache.compress_level: must be 1-12, got 13"},
        {"cache = {\n  compress_level = \"6\"; };", 2,
         "cache.compress_level: must be an integer, got a string"},
        {"cache = {\n  compress_threads = 65; };", 2,
         "cache.compress_threads: must be 0-64, got 65"},
        {"cache = {\n  compress_threads = -1; };", 2,
         "cache.compress_threads: must be 0-64, got -1"},
        {"cache = {\n  max_entries = 0; };", 2, "cache.max_entries: must be 1-4294967295, got 0"},
        {"cache = {\n  max_entries = 5000000000L; };", 2,
         "cache.max_entries: must be 1-4294967295, got 5000000000"},
        {"cache = {\n  max_total_bytes = 0; };", 2,
         "cache.max_total_bytes: must be 1-18446744073709551615 bytes, got 0"},
        {"cache = {\n  max_total_bytes = \"256 MiB\"; };", 2,
         "cache.max_total_bytes: \"256 MiB\" is not a valid size (e.g. 4096, \"64KiB\", "
         "\"256MiB\")"},
        {"cache = {\n  max_entry_size = \"0KiB\"; };", 2,
         "cache.max_entry_size: must be 1-18446744073709551615 bytes, got 0"},
        {"cache = {\n  max_entry_size = -1; };", 2,
         "cache.max_entry_size: must be 1-18446744073709551615 bytes, got -1"},
        {"cache = {\n  compress_min_len = 0; };", 2,
         "cache.compress_min_len: must be 1-4294967295 bytes, got 0"},
        {"cache = {\n  compress_min_len = \"4GiB\"; };", 2,
         "cache.compress_min_len: must be 1-4294967295 bytes, got 4294967296"},
        {"cache = {\n  default_max_age = \"5\"; };", 2,
         "cache.default_max_age: \"5\" is not a valid duration (e.g. \"250ms\", \"10s\", "
         "\"1m30s\")"},
        {"cache = {\n  default_max_age = 300; };", 2,
         "cache.default_max_age: must be a duration string such as \"10s\", got an integer"},
        {"cache = {\n  default_max_age = \"0s\"; };", 2,
         "cache.default_max_age: must be longer than 0"},
        {"cache = {\n  stale_while_revalidate = \"0ms\"; };", 2,
         "cache.stale_while_revalidate: must be longer than 0"},
        {"cache = {\n  stale_while_revalidate = \"1d\"; };", 2,
         "cache.stale_while_revalidate: \"1d\" is not a valid duration (e.g. \"250ms\", "
         "\"10s\", \"1m30s\")"},
        {"cache = {\n  pre_compress = 1; };", 2,
         "cache.pre_compress: must be true or false, got an integer"},
        {"cache = {\n  x_cache = \"no\"; };", 2,
         "cache.x_cache: must be true or false, got a string"},
        {"cache = {\n  rules = { path_prefix = \"/\"; }; };", 2,
         "cache.rules: must be a list of groups ( { ... }, ... ), got a group"},
        {"cache = { rules = (\n  \"/static/\" ); };", 2,
         "cache.rules[0]: must be a group { ... }, got a string"},
        {"cache = { rules = (\n  { path_prefix = \"/a/\"; },\n  { max_age = \"1h\"; } ); };", 3,
         "cache.rules[1]: missing required key 'path_prefix'"},
        {"cache = { rules = (\n  { path_prefix = \"/a/\";\n    ttl = \"1h\"; } ); };", 3,
         "cache.rules[0]: unknown key 'ttl'"},
        {"cache = { rules = (\n  { path_prefix = \"static/\"; } ); };", 2,
         "cache.rules[0].path_prefix: \"static/\" is not a valid path prefix (want \"/...\" "
         "without spaces)"},
        {"cache = { rules = (\n  { path_prefix = \"\"; } ); };", 2,
         "cache.rules[0].path_prefix: \"\" is not a valid path prefix (want \"/...\" without "
         "spaces)"},
        {"cache = { rules = (\n  { path_prefix = \"/a b\"; } ); };", 2,
         "cache.rules[0].path_prefix: \"/a b\" is not a valid path prefix (want \"/...\" "
         "without spaces)"},
        {"cache = { rules = (\n  { path_prefix = 1; } ); };", 2,
         "cache.rules[0].path_prefix: must be a string, got an integer"},
        {"cache = { rules = (\n  { path_prefix = \"/a/\"; },\n  { path_prefix = \"/b/\"; },\n"
         "  { path_prefix = \"/a/\"; } ); };",
         4, "cache.rules[2].path_prefix: duplicate path_prefix \"/a/\" (first at line 2)"},
        {"cache = { rules = (\n  { path_prefix = \"/\";\n    max_age = \"1d\"; } ); };", 3,
         "cache.rules[0].max_age: \"1d\" is not a valid duration (e.g. \"250ms\", \"10s\", "
         "\"1m30s\")"},
        {"cache = { rules = (\n  { path_prefix = \"/\";\n    max_age = \"0m\"; } ); };", 3,
         "cache.rules[0].max_age: must be longer than 0"},
        {"cache = { rules = (\n  { path_prefix = \"/\";\n    max_bytes = 0; } ); };", 3,
         "cache.rules[0].max_bytes: must be 1-18446744073709551615 bytes, got 0"},
        {"cache = { rules = (\n  { path_prefix = \"/\";\n    max_bytes = \"10 MiB\"; } ); };", 3,
         "cache.rules[0].max_bytes: \"10 MiB\" is not a valid size (e.g. 4096, \"64KiB\", "
         "\"256MiB\")"},
        {"cache = { rules = (\n  { path_prefix = \"/\";\n    methods = [ \"POST\" ]; } ); };", 3,
         "cache.rules[0].methods[0]: \"POST\" is not a method the cache serves (it serves only "
         "GET and HEAD)"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  methods = ( \"GET\",\n  \"get\" ); } ); };",
         3,
         "cache.rules[0].methods[1]: \"get\" is not a method the cache serves (it serves only "
         "GET and HEAD)"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  methods = [ \"GET\", \"GET\" ]; } ); };", 2,
         "cache.rules[0].methods[1]: \"GET\" is listed twice"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  methods = []; } ); };", 2,
         "cache.rules[0].methods: must not be empty"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  methods = \"GET\"; } ); };", 2,
         "cache.rules[0].methods: must be a list of methods [ \"GET\", \"HEAD\" ], got a string"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  methods = ( \"GET\", 1 ); } ); };", 2,
         "cache.rules[0].methods[1]: must be a string, got an integer"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = [ 199 ]; } ); };", 2,
         "cache.rules[0].status_only[0]: must be 200-599, got 199"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = ( 200,\n 600 ); } ); };", 3,
         "cache.rules[0].status_only[1]: must be 200-599, got 600"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = [ 200, 200 ]; } ); };", 2,
         "cache.rules[0].status_only[1]: 200 is listed twice"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = [ \"200\" ]; } ); };", 2,
         "cache.rules[0].status_only[0]: must be an integer, got a string"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = ( ); } ); };", 2,
         "cache.rules[0].status_only: must not be empty"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = 200; } ); };", 2,
         "cache.rules[0].status_only: must be a list of statuses [ 200, 301 ], got an integer"},
        {"domains = ( { domain = \"a\"; " B1 "\n  cache = \"off\"; } );", 2,
         "domains[0].cache: must be true or false, got a string"},
        {"domains = ( { domain = \"a\"; " B1 "\n  cache = { }; } );", 2,
         "domains[0].cache: must be true or false, got a group"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_admin(void **state)
{
    static const struct bad cases[] = {
        {"workers = 1;\nadmin = \"127.0.0.1:9901\";", 2,
         "admin: must be a group { ... }, got a string"},
        {"workers = 1;\nadmin = {};", 2, "admin: missing required key 'listen'"},
        {"admin = {\n  token = \"abc\"; };", 1, "admin: missing required key 'listen'"},
        {"admin = {\n  listen = \"localhost:9901\"; };", 2,
         "admin.listen: \"localhost:9901\" is not a valid address (want ip:port or [ip6]:port)"},
        {"admin = {\n  listen = \"127.0.0.1\"; };", 2,
         "admin.listen: \"127.0.0.1\" is not a valid address (want ip:port or [ip6]:port)"},
        {"admin = {\n  listen = \"[::1]:0\"; };", 2,
         "admin.listen: \"[::1]:0\" is not a valid address (want ip:port or [ip6]:port)"},
        {"admin = {\n  listen = 9901; };", 2, "admin.listen: must be a string, got an integer"},
        {"admin = {\n  listen = [\"127.0.0.1:9901\"]; };", 2,
         "admin.listen: must be a string, got an array"},
        {"admin = { listen = \"127.0.0.1:9901\";\n  user = \"x\"; };", 2,
         "admin: unknown key 'user'"},
        {"admin = { listen = \"127.0.0.1:9901\";\n  token = \"\"; };", 2,
         "admin.token: must not be empty"},
        {"admin = { listen = \"127.0.0.1:9901\";\n  token = 1234; };", 2,
         "admin.token: must be a string, got an integer"},
        {"admin = { listen = \"127.0.0.1:9901\";\n  token = \"two words\"; };", 2,
         "admin.token: must be printable ASCII without spaces or control characters (value not "
         "shown)"},
        {"listen = \"0.0.0.0:9901\";\nadmin = {\n  listen = \"127.0.0.1:9901\"; };", 3,
         "admin.listen: \"127.0.0.1:9901\" overlaps the proxy listener \"0.0.0.0:9901\""},
        {"listen = [\"127.0.0.1:80\",\n \"127.0.0.1:9901\"];\nadmin = {\n"
         "  listen = \"127.0.0.1:9901\"; };",
         4, "admin.listen: \"127.0.0.1:9901\" overlaps the proxy listener \"127.0.0.1:9901\""},
        {"admin = {\n  listen = \"0.0.0.0:8080\"; };", 2,
         "admin.listen: \"0.0.0.0:8080\" overlaps the proxy listener \"0.0.0.0:8080\" (the "
         "default listen)"},
        {"admin = {\n  listen = \"127.0.0.1:8080\"; };", 2,
         "admin.listen: \"127.0.0.1:8080\" overlaps the proxy listener \"0.0.0.0:8080\" (the "
         "default listen)"},
        {"listen = \"[::]:80\";\nadmin = {\n  listen = \"[::1]:80\"; };", 3,
         "admin.listen: \"[::1]:80\" overlaps the proxy listener \"[::]:80\""},
        {"listen = \"[::1]:80\";\nadmin = {\n  listen = \"[::]:80\"; };", 3,
         "admin.listen: \"[::]:80\" overlaps the proxy listener \"[::1]:80\""},
        {"admin = { listen = \"127.0.0.1:8443\"; };\nlisten = \"127.0.0.1:80\";\n"
         "listen_tls = \"0.0.0.0:8443\";\n"
         "tls = { cert = \"/etc/hostname\"; key = \"/etc/hostname\"; };",
         1, "admin.listen: \"127.0.0.1:8443\" overlaps the proxy listener \"0.0.0.0:8443\""},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

/* The token is a secret: a message about it says what is wrong, never what it is. */
static void test_admin_token_not_echoed(void **state)
{
    static const char *const bad[] = {
        "hunter2 hunter2",  "hunter2\\thunter2", "hunter2\\x01", "hunter2\\n",
        "h\\xc3\\xa9nter2", " hunter2",          "hunter2\\x7f",
    };
    struct rp_file_config c;
    char text[256], path[64], err[ERRLEN];

    (void)state;
    for (size_t i = 0; i < N(bad); i++) {
        snprintf(text, sizeof(text), "admin = { listen = \"127.0.0.1:9901\";\n  token = \"%s\"; };",
                 bad[i]);
        assert_int_equal(load_text(text, path, &c, err), -EINVAL);
        rp_file_config_free(&c);
        if (!strstr(err, ":2: admin.token: ") || strstr(err, "hunter") || strstr(err, "nter2"))
            fail_msg("token %s: %s", bad[i], err);
    }
    /* a bad listen beside a good token: the token is not in that message either */
    assert_int_equal(
        load_text("admin = { token = \"hunter2\";\n  listen = \"nowhere\"; };", path, &c, err),
        -EINVAL);
    rp_file_config_free(&c);
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(load_text("admin = { token = \"hunter2\"; };", path, &c, err), -EINVAL);
    rp_file_config_free(&c);
    assert_null(strstr(err, "hunter2"));
}

/* A failure deep inside a cache rule leaves a partly filled struct; freeing it is clean. */
static void test_free_after_cache_failure(void **state)
{
    struct rp_file_config c, zero;
    char path[64], err[ERRLEN];

    (void)state;
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(load_text("admin = { listen = \"127.0.0.1:9901\"; token = \"t\"; };\n"
                               "cache = { rules = (\n"
                               "  { path_prefix = \"/a/\"; methods = [\"GET\"]; },\n"
                               "  { path_prefix = \"/b/\"; methods = [\"HEAD\", \"GET\"];\n"
                               "    status_only = [200, 301, 700]; } ); };\n",
                               path, &c, err),
                     -EINVAL);
    assert_true(c.has_cache);
    assert_int_equal(c.cache.n_rules, 2);
    assert_int_equal(c.cache.rules[1].n_methods, 2);
    assert_int_equal(c.cache.rules[1].n_status_only, 2);
    rp_file_config_free(&c);
    assert_memory_equal(&c, &zero, sizeof(c));
}

static void test_errors_types(void **state)
{
    static const struct bad cases[] = {
        {"workers = \"4\";", 1, "workers: must be an integer, got a string"},
        {"workers = 4.0;", 1, "workers: must be an integer, got a float"},
        {"workers = true;", 1, "workers: must be an integer, got a boolean"},
        {"workers = [4];", 1, "workers: must be an integer, got an array"},
        {"workers = (4);", 1, "workers: must be an integer, got a list"},
        {"workers = { n = 4; };", 1, "workers: must be an integer, got a group"},
        {"max_header_count = \"100\";", 1, "max_header_count: must be an integer, got a string"},
        {"routes = ( { path_prefix = 1; backend = \"http://h\"; } );", 1,
         "routes[0].path_prefix: must be a string, got an integer"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_syntax(void **state)
{
    static const struct bad cases[] = {
        {"workers = 4;\nlisten = ;\n", 2, "syntax error"},
        {"workers = 4;\nworkers = 5;\n", 2, "duplicate setting name"},
        {"domains = (\n  { domain = \"a\";\n", 3, "syntax error"},
        {"workers = 4;\n\nlisten = \"a\" \"b\" 5;\n", 3, "syntax error"},
        {"workers = 4;\nlisten = \"0.0.0.0:80\n", 3, "syntax error"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_files(void **state)
{
    struct rp_file_config c;
    char err[ERRLEN];

    (void)state;
    assert_int_equal(rp_file_config_load("/nonexistent/rp.conf", &c, err, ERRLEN), -ENOENT);
    assert_string_equal(err, "/nonexistent/rp.conf: cannot read: No such file or directory");
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load("/tmp", &c, err, ERRLEN), -EISDIR);
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
    rp_file_config_free(&c);
}

static void test_error_buffer_limits(void **state)
{
    struct rp_file_config c;
    char err[16];

    (void)state;
    memset(err, 'x', sizeof(err));
    assert_int_equal(rp_file_config_load_string("workers = 0;", "m.conf", &c, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "m.conf:1: worke");
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load_string("workers = 0;", "m.conf", &c, NULL, 0), -EINVAL);
    rp_file_config_free(&c);
    assert_int_equal(rp_file_config_load("/nonexistent", &c, NULL, 0), -ENOENT);
    rp_file_config_free(&c);
}

/* A failure half way leaves a partly filled struct; freeing it (twice, even) must be clean. */
static void test_free_after_failure(void **state)
{
    struct rp_file_config c, zero;
    char path[64], err[ERRLEN];

    (void)state;
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(load_text("listen = [\"0.0.0.0:80\", \"[::]:80\"];\n"
                               "domains = ( { domain = \"a\"; " B1 " },\n"
                               " { domain = \"b\"; host_header = \"h\";\n"
                               "   backends = ( { addr = \"http://x\"; }, { addr = \"ftp://\"; } );"
                               " } );\n",
                               path, &c, err),
                     -EINVAL);
    assert_int_equal(c.n_domains, 2);
    assert_int_equal(c.domains[1].n_backends, 2);
    rp_file_config_free(&c);
    assert_memory_equal(&c, &zero, sizeof(c));
    rp_file_config_free(&c);
    rp_file_config_free(NULL);
}

/* ---- nothing to serve ---- */

/* No domain and no route: whatever else the file holds, the daemon would proxy nothing. */
static void test_errors_nothing_to_serve(void **state)
{
    static const struct bad cases[] = {
        {"", 0, "nothing to serve: no domains and no routes"},
        {"\n\n", 0, "nothing to serve: no domains and no routes"},
        {"# a comment\n// another\n/* and a block */\n", 0,
         "nothing to serve: no domains and no routes"},
        {"workers = 2;\n", 0, "nothing to serve: no domains and no routes"},
        {"listen = \"127.0.0.1:8080\";\nworkers = 2;\nlog_level = \"warn\";\n", 0,
         "nothing to serve: no domains and no routes"},
        {"admin = { listen = \"127.0.0.1:9901\"; token = \"t\"; };\n", 0,
         "nothing to serve: no domains and no routes"},
        {"cache = { rules = ( { path_prefix = \"/\"; } ); };\n", 0,
         "nothing to serve: no domains and no routes"},
        {"domains = ();\n", 0, "nothing to serve: no domains and no routes"},
        {"domains = ();\nroutes = [];\n", 0, "nothing to serve: no domains and no routes"},
        /* the file's own errors come first */
        {"workers = 0;\n", 1, "workers: must be 1-1024, got 0"},
        {"listen_tls = \"0.0.0.0:8443\";\n", 1,
         "listen_tls: TLS listeners need a tls = { cert = ...; key = ...; } block"},
        {"admin = {\n  listen = \"0.0.0.0:8080\"; };", 2,
         "admin.listen: \"0.0.0.0:8080\" overlaps the proxy listener \"0.0.0.0:8080\" (the "
         "default listen)"},
    };
    struct rp_file_config c;

    (void)state;
    expect_errors(cases, N(cases));
    /* one domain, or one route, is enough */
    load_ok("domains = ( { domain = \"a\"; " B1 " } );", &c);
    assert_int_equal(c.n_domains, 1);
    assert_int_equal(c.n_routes, 0);
    rp_file_config_free(&c);
    load_ok("domains = ();\n" R1, &c);
    assert_int_equal(c.n_domains, 0);
    assert_int_equal(c.n_routes, 1);
    rp_file_config_free(&c);
}

/* ---- integers ---- */

/* libconfig 1.5 alone reads each of these as a 32-bit value that passes the range check
 * (4294967297 as 1, 4294967296 as 0, 4294967496 as 200): the loader sees what is written. */
static void test_errors_integers_past_32_bits(void **state)
{
    static const struct bad cases[] = {
        {"workers = 4294967297;", 1, "workers: must be 1-1024, got 4294967297"},
        {"\nworkers = 3000000000;", 2, "workers: must be 1-1024, got 3000000000"},
        {"workers = 2147483648;", 1, "workers: must be 1-1024, got 2147483648"},
        {"workers = -4294967295;", 1, "workers: must be 1-1024, got -4294967295"},
        {"workers = +4294967298;", 1, "workers: must be 1-1024, got 4294967298"},
        {"workers = 0x100000001;", 1, "workers: must be 1-1024, got 4294967297"},
        {"workers = 0XFFFFFFFF;", 1, "workers: must be 1-1024, got 4294967295"},
        {"workers = 4294967297L;", 1, "workers: must be 1-1024, got 4294967297"},
        {"workers = 4294967297LL;", 1, "workers: must be 1-1024, got 4294967297"},
        {"workers = 9223372036854775807;", 1, "workers: must be 1-1024, got 9223372036854775807"},
        {"workers = -9223372036854775808;", 1, "workers: must be 1-1024, got -9223372036854775808"},
        {"workers = 0x7FFFFFFFFFFFFFFF;", 1, "workers: must be 1-1024, got 9223372036854775807"},
        {"max_header_count = 4294967496;", 1, "max_header_count: must be 1-10000, got 4294967496"},
        {"max_target_len = 4294975488;", 1, "max_target_len: must be 1-1048576, got 4294975488"},
        {"max_header_bytes = 4294975488;", 1,
         "max_header_bytes: must be 1-1048576 bytes, got 4294975488"},
        {"max_body_size = -4294967295;", 1,
         "max_body_size: must be 1-18446744073709551615 bytes, got -4294967295"},
        {"domains = ( { domain = \"a\"; " B1 "\n  max_idle_conns = 4294967296; } );", 2,
         "domains[0].max_idle_conns: must be 0-100000, got 4294967296"},
        {"domains = ( { domain = \"a\"; " B1 "\n  max_retries = 4294967296; } );", 2,
         "domains[0].max_retries: must be 0-10, got 4294967296"},
        {"domains = ( { domain = \"a\";\n"
         "  backends = ( { addr = \"http://h\"; weight = 4294967297; } ); } );",
         2, "domains[0].backends[0].weight: must be 1-100, got 4294967297"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = {\n"
         "    fail_threshold = 4294967299; }; } );",
         3, "domains[0].health_check.fail_threshold: must be 1-100, got 4294967299"},
        {"domains = ( { domain = \"a\"; " B1 "\n  health_check = {\n"
         "    success_threshold = -4294967294; }; } );",
         3, "domains[0].health_check.success_threshold: must be 1-100, got -4294967294"},
        {"cache = {\n  compress_level = 4294967302; };", 2,
         "cache.compress_level: must be 1-12, got 4294967302"},
        {"cache = {\n  compress_threads = 4294967297; };", 2,
         "cache.compress_threads: must be 0-64, got 4294967297"},
        {"cache = {\n  max_entries = 4294967297; };", 2,
         "cache.max_entries: must be 1-4294967295, got 4294967297"},
        {"cache = {\n  compress_min_len = 4294967297; };", 2,
         "cache.compress_min_len: must be 1-4294967295 bytes, got 4294967297"},
        {"cache = {\n  max_total_bytes = -4294967295; };", 2,
         "cache.max_total_bytes: must be 1-18446744073709551615 bytes, got -4294967295"},
        {"cache = {\n  max_entry_size = -4294967295; };", 2,
         "cache.max_entry_size: must be 1-18446744073709551615 bytes, got -4294967295"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  max_bytes = -4294967295; } ); };", 2,
         "cache.rules[0].max_bytes: must be 1-18446744073709551615 bytes, got -4294967295"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = [ 200, 4294967496 ]; } ); };",
         2, "cache.rules[0].status_only[1]: must be 200-599, got 4294967496"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = (\n 4294967497 ); } ); };", 3,
         "cache.rules[0].status_only[0]: must be 200-599, got 4294967497"},
        /* lines stay right after multi-line strings and comments */
        {"domains = ( { domain = \"a\"; " B1 "\n  /* two\n  lines */ host_header = \"x\";\n"
         "  max_retries = 4294967297; } );",
         4, "domains[0].max_retries: must be 0-10, got 4294967297"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

static void test_errors_integers_past_64_bits(void **state)
{
    static const struct bad cases[] = {
        {"workers = 99999999999999999999;", 1,
         "integer 99999999999999999999 does not fit in 64 bits"},
        {"\n\nworkers = 9223372036854775808;", 3,
         "integer 9223372036854775808 does not fit in 64 bits"},
        {"workers = 9223372036854775808L;", 1,
         "integer 9223372036854775808 does not fit in 64 bits"},
        {"workers = -9223372036854775809;", 1,
         "integer -9223372036854775809 does not fit in 64 bits"},
        {"workers = 0x8000000000000000;", 1, "integer 0x8000000000000000 does not fit in 64 bits"},
        {"workers = 0x1FFFFFFFFFFFFFFFFL;", 1,
         "integer 0x1FFFFFFFFFFFFFFFF does not fit in 64 bits"},
        {"cache = { rules = ( { path_prefix = \"/\";\n  status_only = [ 200, 18446744073709551816 "
         "]; } ); };",
         2, "integer 18446744073709551816 does not fit in 64 bits"},
        {"workers = 123456789012345678901234567890123456789012345678901234567890;", 1,
         "integer 1234567890123456789012345678901234567890... does not fit in 64 bits"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

/* Only integer literals are touched: names, strings, comments and floats stay as written,
 * and libconfig's own syntax errors stay its. */
static void test_errors_integers_tokens(void **state)
{
    static const struct bad cases[] = {
        {"a4294967297 = 1;", 1, "unknown key 'a4294967297'"},
        {"*x-1_2 = 3;", 1, "unknown key '*x-1_2'"},
        {"workers = 4294967297.0;", 1, "workers: must be an integer, got a float"},
        {"workers = 99999999999999999999.5;", 1, "workers: must be an integer, got a float"},
        {"workers = 1e3;", 1, "workers: must be an integer, got a float"},
        {"workers = 5E+3;", 1, "workers: must be an integer, got a float"},
        {"workers = .5;", 1, "workers: must be an integer, got a float"},
        {"workers = 5.;", 1, "workers: must be an integer, got a float"},
        {"workers = -1.5e-3;", 1, "workers: must be an integer, got a float"},
        {"workers = \"4294967297\";", 1, "workers: must be an integer, got a string"},
        {"workers = 4294967297abc;", 1, "syntax error"},
        {"workers = 5e;", 1, "syntax error"},
        {"workers = 1l;", 1, "syntax error"},
        {"workers = -0x5;", 1, "syntax error"},
        {"workers = 0x;", 1, "syntax error"},
    };
    struct rp_file_config c;

    (void)state;
    expect_errors(cases, N(cases));
    load_ok("# 99999999999999999999 @include \"x\"\n"
            "// 99999999999999999999\n"
            "/* 4294967297\n 99999999999999999999 *//* 1 */\n"
            "routes = ( { path_prefix = \"/4294967297/\"; backend = \"http://127.0.0.1:1\";\n"
            "  host_header = \"a\\\"4294967297@include\"; } );\n"
            "workers = 007; max_header_count = +12; max_target_len = 0x10;\n",
            &c);
    assert_string_equal(c.routes[0].path_prefix, "/4294967297/");
    assert_string_equal(c.routes[0].host_header, "a\"4294967297@include");
    assert_int_equal(c.server.workers, 7);
    assert_int_equal(c.server.max_header_count, 12);
    assert_int_equal(c.server.max_target_len, 16);
    rp_file_config_free(&c);
}

/* Sizes past 32 bits given as integers now mean what they say (libconfig alone made
 * 4294967296 a 0 and 8589934593 a 1); integers and 64-bit ones mix in an array. */
static void test_integers_as_written(void **state)
{
    struct rp_file_config c;

    (void)state;
    load_ok("max_body_size = 4294967296;\n"
            "cache = { max_total_bytes = 8589934593; max_entry_size = 9223372036854775807;\n"
            "  max_entries = 4294967295; compress_min_len = 4294967295;\n"
            "  rules = ( { path_prefix = \"/\"; max_bytes = 4294967297;\n"
            "              status_only = [ 200L, 301, 0x194 ]; } ); };\n" R1,
            &c);
    assert_int_equal(c.server.max_body_bytes, 4294967296ULL);
    assert_int_equal(c.cache.max_total_bytes, 8589934593ULL);
    assert_int_equal(c.cache.max_entry_size, (uint64_t)INT64_MAX);
    assert_int_equal(c.cache.max_entries, UINT32_MAX);
    assert_int_equal(c.cache.compress_min_len, UINT32_MAX);
    assert_int_equal(c.cache.rules[0].max_bytes, 4294967297ULL);
    assert_int_equal(c.cache.rules[0].n_status_only, 3);
    assert_int_equal(c.cache.rules[0].status_only[0], 200);
    assert_int_equal(c.cache.rules[0].status_only[1], 301);
    assert_int_equal(c.cache.rules[0].status_only[2], 404);
    rp_file_config_free(&c);
}

/* libconfig would read an included file itself, where integers are not promoted; a NUL
 * byte would end libconfig's reading of a string value early. */
static void test_errors_include_and_nul(void **state)
{
    static const struct bad cases[] = {
        {"workers = 2;\n@include \"/etc/hostname\"\n", 2,
         "@include is not supported: write one file"},
        {"@include \"/nonexistent.conf\"\n" R1, 1, "@include is not supported: write one file"},
    };
    static const char nul[] = "workers = 2;\n# a comment \0 with a NUL\n" R1;
    static const char nul_in_string[] = R1 "\nlog_level = \"info\0debug\";\n";
    struct rp_file_config c;
    char path[64], err[ERRLEN], want[ERRLEN];

    (void)state;
    expect_errors(cases, N(cases));
    assert_int_equal(load_bytes(nul, sizeof(nul) - 1, path, &c, err), -EINVAL);
    rp_file_config_free(&c);
    snprintf(want, sizeof(want), "%s:2: contains a NUL byte: not a configuration file", path);
    assert_string_equal(err, want);
    assert_int_equal(load_bytes(nul_in_string, sizeof(nul_in_string) - 1, path, &c, err), -EINVAL);
    rp_file_config_free(&c);
    snprintf(want, sizeof(want), "%s:3: contains a NUL byte: not a configuration file", path);
    assert_string_equal(err, want);
}

/* ---- try_timeout and hedge ---- */

static void test_domain_try_timeout_and_hedge(void **state)
{
    struct rp_file_config c;

    (void)state;
    load_ok("domains = (\n"
            " { domain = \"a\"; " B1 " try_timeout = \"2s\"; read_timeout = \"3s\"; },\n"
            " { domain = \"b\"; " B1 " hedge = true; try_timeout = \"250ms\"; },\n"
            " { domain = \"c\"; " B1 " try_timeout = \"0s\"; hedge = false; },\n"
            " { domain = \"d\"; " B1 " },\n"
            " { domain = \"e\"; " B1 " read_timeout = \"1s\"; try_timeout = \"999ms\";\n"
            "   hedge = true; }\n"
            ");\n",
            &c);
    assert_int_equal(c.n_domains, 5);
    assert_int_equal(c.domains[0].try_timeout_ms, 2000);
    assert_int_equal(c.domains[0].read_timeout_ms, 3000);
    assert_false(c.domains[0].hedge);
    assert_int_equal(c.domains[1].try_timeout_ms, 250);
    assert_true(c.domains[1].hedge);
    assert_int_equal(c.domains[2].try_timeout_ms, 0); /* "0s": off, as leaving it out */
    assert_false(c.domains[2].hedge);
    assert_int_equal(c.domains[3].try_timeout_ms, 0);
    assert_false(c.domains[3].hedge);
    assert_int_equal(c.domains[4].try_timeout_ms, 999);
    assert_true(c.domains[4].hedge);
    rp_file_config_free(&c);
}

static void test_send_proxy_protocol(void **state)
{
    static const struct bad cases[] = {
        {"domains = ( { domain = \"a\"; " B1 "\n  send_proxy_protocol = \"v3\"; } );", 2,
         "domains[0].send_proxy_protocol: \"v3\" is not one of v1, v2"},
        {"domains = ( { domain = \"a\"; " B1 "\n  send_proxy_protocol = 2; } );", 2,
         "domains[0].send_proxy_protocol: must be a string, got an integer"},
        {"domains = ( { domain = \"a\"; " B1 "\n  send_proxy_protocol = true; } );", 2,
         "domains[0].send_proxy_protocol: must be a string, got a boolean"},
        {"routes = ( { path_prefix = \"/\"; backend = \"http://127.0.0.1:1\";\n"
         "  send_proxy_protocol = \"v1\"; } );",
         2, "routes[0]: unknown key 'send_proxy_protocol'"},
    };
    struct rp_file_config c;

    (void)state;
    load_ok("domains = (\n"
            " { domain = \"a\"; " B1 " send_proxy_protocol = \"v1\"; },\n"
            " { domain = \"b\"; " B1 " send_proxy_protocol = \"v2\"; },\n"
            " { domain = \"c\"; " B1 " }\n"
            ");\n",
            &c);
    assert_int_equal(c.domains[0].send_proxy_protocol, 1);
    assert_int_equal(c.domains[1].send_proxy_protocol, 2);
    assert_int_equal(c.domains[2].send_proxy_protocol, 0);
    rp_file_config_free(&c);
    expect_errors(cases, N(cases));
}

static void test_upgrade_and_tunnel_idle_timeout(void **state)
{
    struct rp_file_config c;
    static const struct bad bad[] = {
        {"domains = ( { domain = \"a\"; " B1 " upgrade = \"no\"; } );\n", 1,
         "domains[0].upgrade: must be true or false, got a string"},
        {"tunnel_idle_timeout = 5;\n" R1, 1,
         "tunnel_idle_timeout: must be a duration string such as \"10s\", got an integer"},
    };

    (void)state;
    load_ok("tunnel_idle_timeout = \"90s\";\n"
            "domains = ( { domain = \"a\"; " B1 " upgrade = false; },\n"
            "            { domain = \"b\"; " B1 " upgrade = true; },\n"
            "            { domain = \"c\"; " B1 " } );\n",
            &c);
    assert_int_equal(c.server.tunnel_idle_timeout_ms, 90000);
    assert_true(c.domains[0].no_upgrade);
    assert_false(c.domains[1].no_upgrade);
    assert_false(c.domains[2].no_upgrade); /* tunnels by default */
    rp_file_config_free(&c);
    expect_errors(bad, N(bad));
}

static void test_errors_try_timeout_and_hedge(void **state)
{
    static const struct bad cases[] = {
        {"domains = ( { domain = \"a\"; " B1 " read_timeout = \"3s\";\n"
         "  try_timeout = \"3s\"; } );",
         2, "domains[0].try_timeout: must be shorter than read_timeout (\"3s\"), got \"3s\""},
        {"domains = ( { domain = \"a\"; " B1 "\n  try_timeout = \"1m\";\n"
         "  read_timeout = \"30s\"; } );",
         2, "domains[0].try_timeout: must be shorter than read_timeout (\"30s\"), got \"1m\""},
        {"domains = ( { domain = \"a\"; " B1 " },\n { domain = \"b\"; " B1
         " read_timeout = \"1s\";\n  try_timeout = \"1s1ms\"; hedge = true; } );",
         3, "domains[1].try_timeout: must be shorter than read_timeout (\"1s\"), got \"1s1ms\""},
        {"domains = ( { domain = \"a\"; " B1 "\n  hedge = true; } );", 2,
         "domains[0].hedge: needs a try_timeout (a hedge is sent when it fires)"},
        {"domains = ( { domain = \"a\"; " B1 " try_timeout = \"0s\";\n  hedge = true; } );", 2,
         "domains[0].hedge: needs a try_timeout (a hedge is sent when it fires)"},
        {"domains = ( { domain = \"a\"; " B1 "\n  try_timeout = 2; } );", 2,
         "domains[0].try_timeout: must be a duration string such as \"10s\", got an integer"},
        {"domains = ( { domain = \"a\"; " B1 "\n  try_timeout = \"2\"; } );", 2,
         "domains[0].try_timeout: \"2\" is not a valid duration (e.g. \"250ms\", \"10s\", "
         "\"1m30s\")"},
        {"domains = ( { domain = \"a\"; " B1 " try_timeout = \"1s\";\n  hedge = \"yes\"; } );", 2,
         "domains[0].hedge: must be true or false, got a string"},
        {"routes = ( { path_prefix = \"/\"; backend = \"http://h\";\n  try_timeout = \"1s\"; } );",
         2, "routes[0]: unknown key 'try_timeout'"},
    };

    (void)state;
    expect_errors(cases, N(cases));
}

/* ---- the file itself ---- */

/* 16 MiB is the most a configuration file may hold: one past it is refused unread. */
static void test_errors_file_too_large(void **state)
{
    size_t max = 16 << 20;
    char *text = malloc(max + 1), path[64], err[ERRLEN], want[ERRLEN];
    struct rp_file_config c;

    (void)state;
    assert_non_null(text);
    memset(text, ' ', max + 1);
    memcpy(text, R1, strlen(R1));
    assert_int_equal(load_bytes(text, max, path, &c, err), 0);
    assert_int_equal(c.n_routes, 1);
    rp_file_config_free(&c);
    assert_int_equal(load_bytes(text, max + 1, path, &c, err), -EINVAL);
    rp_file_config_free(&c);
    free(text);
    snprintf(want, sizeof(want), "%s: larger than 16 MiB: not a configuration file", path);
    assert_string_equal(err, want);
}

/* A file that opens but cannot be read: /proc/self/mem fails with EIO at offset 0. */
static void test_errors_file_read_fails(void **state)
{
    struct rp_file_config c;
    char err[ERRLEN];

    (void)state;
    assert_int_equal(rp_file_config_load("/proc/self/mem", &c, err, ERRLEN), -EIO);
    assert_string_equal(err, "/proc/self/mem: cannot read: Input/output error");
    rp_file_config_free(&c);
}

/* A mode-000 file. Root reads any file, so as root the load runs in a child that has
 * become nobody first; the child reports through its exit status. */
static void test_errors_file_unreadable(void **state)
{
    char path[] = "/tmp/rp_test_config_XXXXXX";
    int fd = mkstemp(path), status = -1;
    pid_t pid;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, R1, strlen(R1)), (ssize_t)strlen(R1));
    assert_int_equal(fchmod(fd, 0), 0);
    close(fd);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rp_file_config c;
        char err[ERRLEN], want[ERRLEN];
        int rc;

        if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
            _exit(2);
        rc = rp_file_config_load(path, &c, err, ERRLEN);
        rp_file_config_free(&c);
        snprintf(want, sizeof(want), "%s: cannot read: Permission denied", path);
        if (rc != -EACCES || strcmp(err, want)) {
            fprintf(stderr, "rc %d\n got: %s\nwant: %s\n", rc, err, want);
            _exit(1);
        }
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(path);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- duration and size parsing ---- */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        int rc;
        uint32_t ms;
    } cases[] = {
        {"250ms", 0, 250},
        {"10s", 0, 10000},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"1m30s", 0, 90000},
        {"1h2m3s4ms", 0, 3723004},
        {"0s", 0, 0},
        {"0ms", 0, 0},
        {"007s", 0, 7000},
        {"1193h2m47s295ms", 0, UINT32_MAX},
        {"4294967295ms", 0, UINT32_MAX},
        {"4294967296ms", -EINVAL, 0},
        {"1193h2m47s296ms", -EINVAL, 0},
        {"1194h", -EINVAL, 0},
        {"99999999999999999999999s", -EINVAL, 0},
        {"10", -EINVAL, 0},
        {"10x", -EINVAL, 0},
        {"", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"+1s", -EINVAL, 0},
        {"5m3", -EINVAL, 0},
        {"s", -EINVAL, 0},
        {"ms", -EINVAL, 0},
        {"1.5s", -EINVAL, 0},
        {" 1s", -EINVAL, 0},
        {"1s ", -EINVAL, 0},
        {"1 s", -EINVAL, 0},
        {"1S", -EINVAL, 0},
        {"1d", -EINVAL, 0},
        {"30s1m", -EINVAL, 0},
        {"1s1s", -EINVAL, 0},
        {"1ms1s", -EINVAL, 0},
        {"1mss", -EINVAL, 0},
    };

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        uint32_t ms = 12345;
        int rc = rp_parse_duration_ms(cases[i].s, &ms);
        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms) || (rc && ms != 12345))
            fail_msg("\"%s\": rc %d ms %u, want rc %d ms %u", cases[i].s, rc, ms, cases[i].rc,
                     cases[i].ms);
    }
    assert_int_equal(rp_parse_duration_ms(NULL, &(uint32_t){0}), -EINVAL);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"4096", 0, 4096},
        {"0", 0, 0},
        {"64KiB", 0, 64 << 10},
        {"256MiB", 0, 256ULL << 20},
        {"1GiB", 0, 1ULL << 30},
        {"10KB", 0, 10000},
        {"10MB", 0, 10000000},
        {"1GB", 0, 1000000000},
        {"16k", 0, 16 << 10},
        {"16K", 0, 16 << 10},
        {"16m", 0, 16 << 20},
        {"16M", 0, 16 << 20},
        {"1g", 0, 1ULL << 30},
        {"1G", 0, 1ULL << 30},
        {"18446744073709551615", 0, UINT64_MAX},
        {"17179869183GiB", 0, 17179869183ULL << 30},
        {"18446744073709551616", -EINVAL, 0},
        {"17179869184GiB", -EINVAL, 0},
        {"99999999999999999999999", -EINVAL, 0},
        {"", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"+1", -EINVAL, 0},
        {"10x", -EINVAL, 0},
        {"10 KiB", -EINVAL, 0},
        {"10KiBs", -EINVAL, 0},
        {"10kib", -EINVAL, 0},
        {"1.5MiB", -EINVAL, 0},
        {"KiB", -EINVAL, 0},
        {"10B", -EINVAL, 0},
        {"1TiB", -EINVAL, 0},
        {" 1", -EINVAL, 0},
    };

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        uint64_t b = 12345;
        int rc = rp_parse_size(cases[i].s, &b);
        if (rc != cases[i].rc || (rc == 0 && b != cases[i].bytes) || (rc && b != 12345))
            fail_msg("\"%s\": rc %d bytes %llu, want rc %d bytes %llu", cases[i].s, rc,
                     (unsigned long long)b, cases[i].rc, (unsigned long long)cases[i].bytes);
    }
    assert_int_equal(rp_parse_size(NULL, &(uint64_t){0}), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_routes_only_is_all_defaults),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_listen_groups),
        cmocka_unit_test(test_errors_listen_groups),
        cmocka_unit_test(test_server_fields),
        cmocka_unit_test(test_domain_fields),
        cmocka_unit_test(test_backend_addresses_accepted),
        cmocka_unit_test(test_load_string),
        cmocka_unit_test(test_cache_defaults),
        cmocka_unit_test(test_cache_fields),
        cmocka_unit_test(test_domain_cache),
        cmocka_unit_test(test_admin_fields),
        cmocka_unit_test(test_errors_top_level),
        cmocka_unit_test(test_errors_tls),
        cmocka_unit_test(test_errors_domains),
        cmocka_unit_test(test_errors_backend_addresses),
        cmocka_unit_test(test_errors_routes),
        cmocka_unit_test(test_errors_cache),
        cmocka_unit_test(test_errors_admin),
        cmocka_unit_test(test_admin_token_not_echoed),
        cmocka_unit_test(test_errors_types),
        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_errors_files),
        cmocka_unit_test(test_error_buffer_limits),
        cmocka_unit_test(test_free_after_failure),
        cmocka_unit_test(test_free_after_cache_failure),
        cmocka_unit_test(test_errors_nothing_to_serve),
        cmocka_unit_test(test_errors_integers_past_32_bits),
        cmocka_unit_test(test_errors_integers_past_64_bits),
        cmocka_unit_test(test_errors_integers_tokens),
        cmocka_unit_test(test_integers_as_written),
        cmocka_unit_test(test_errors_include_and_nul),
        cmocka_unit_test(test_domain_try_timeout_and_hedge),
        cmocka_unit_test(test_upgrade_and_tunnel_idle_timeout),
        cmocka_unit_test(test_send_proxy_protocol),
        cmocka_unit_test(test_errors_try_timeout_and_hedge),
        cmocka_unit_test(test_errors_file_too_large),
        cmocka_unit_test(test_errors_file_read_fails),
        cmocka_unit_test(test_errors_file_unreadable),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
