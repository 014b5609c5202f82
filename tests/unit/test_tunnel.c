/* test_tunnel.c: which requests engine/tunnel.c tunnels, and the fields it sends upstream:
 * Connection: upgrade with an Upgrade field in HTTP/1.1, without a body, for any protocol but
 * h2c, unless the domain says upgrade = false. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static const struct h1_limits lim = {
    .max_head_bytes = 16384, .max_headers = 100, .max_target_len = 8192};

/* Whether the request head `head` is tunnelled by t. */
static bool wanted(const char *head, const struct target *t)
{
    struct h1_header hdrs[32];
    struct h1_request r = {.headers = hdrs, .headers_cap = 32};
    int status;

    assert_true(h1_parse_request(head, strlen(head), &r, &lim, &status) > 0);
    return tunnel_wanted(&r, t) != NULL;
}

static void which_requests_are_tunnelled(void **state)
{
    struct target t = {0}, off = {.no_upgrade = true};

    (void)state;
    assert_true(wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                       "Upgrade: websocket\r\n\r\n",
                       &t));
    assert_true(wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\n"
                       "Upgrade: WebSocket/13\r\n\r\n",
                       &t));
    assert_true(wanted("GET /c HTTP/1.1\r\nHost: a\r\nUpgrade: raw\r\nConnection: x\r\n"
                       "Connection: UPGRADE\r\n\r\n",
                       &t));
    /* not asked for in Connection, or nothing named */
    assert_false(wanted("GET /c HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &t));
    assert_false(wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", &t));
    assert_false(
        wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: \r\n\r\n", &t));
    /* h2c is HTTP/2: not tunnelled, even beside another protocol */
    assert_false(
        wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", &t));
    assert_false(wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                        "Upgrade: websocket, h2c\r\n\r\n",
                        &t));
    /* HTTP/1.0 (RFC 9110 7.8), a body, two Upgrade fields, a domain that says no */
    assert_false(wanted("GET /c HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\n"
                        "Upgrade: websocket\r\n\r\n",
                        &t));
    assert_false(wanted("POST /c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: raw\r\n"
                        "Content-Length: 3\r\n\r\n",
                        &t));
    assert_false(wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: a\r\n"
                        "Upgrade: b\r\n\r\n",
                        &t));
    assert_false(wanted("GET /c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                        "Upgrade: websocket\r\n\r\n",
                        &off));
}

static void upstream_fields_are_recreated(void **state)
{
    const char *head = "GET /c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                       "Upgrade: websocket\r\n\r\n";
    struct h1_header hdrs[32];
    struct h1_request r = {.headers = hdrs, .headers_cap = 32};
    struct target t = {0};
    struct buf b = {0};
    bool ok = true;
    int status;

    (void)state;
    assert_true(h1_parse_request(head, strlen(head), &r, &lim, &status) > 0);
    assert_true(tunnel_put_request_fields(&r, &t, &b, &ok));
    assert_true(ok);
    assert_int_equal(buf_used(&b), strlen("Connection: upgrade\r\nUpgrade: websocket\r\n"));
    assert_memory_equal(buf_data(&b), "Connection: upgrade\r\nUpgrade: websocket\r\n",
                        buf_used(&b));
    buf_free(&b);
}

static void a_101_must_name_its_protocol(void **state)
{
    struct h1_header hdrs[8];
    struct h1_response r = {.headers = hdrs, .headers_cap = 8};
    const char *with = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    const char *without = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n";

    (void)state;
    assert_true(h1_parse_response(with, strlen(with), &r, &lim, H1_M_GET) > 0);
    assert_true(tunnel_response_ok(&r));
    r = (struct h1_response){.headers = hdrs, .headers_cap = 8};
    assert_true(h1_parse_response(without, strlen(without), &r, &lim, H1_M_GET) > 0);
    assert_false(tunnel_response_ok(&r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(which_requests_are_tunnelled),
        cmocka_unit_test(upstream_fields_are_recreated),
        cmocka_unit_test(a_101_must_name_its_protocol),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
