/* test_upgrade.c: unit tests for engine/upgrade.c's message format and transport, and the
 * library's side of a handover (rp_server_inherit_listener's checks). Every message type
 * round-trips to the same bytes; every proper prefix, every header fault and every field out
 * of range is refused, by the decoder and the encoder alike; a record travels with its fds
 * over a socketpair, and one whose fds do not match its listeners is refused with the fds
 * closed. Each decoder input sits right before a PROT_NONE page, so a read past its end
 * crashes the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../engine/upgrade.c"
#include "../../engine/upgrade_msg.c"
#include "guard.h"
#include "internal.h"

/* upg_decode on a copy of p[0..n) that ends where an unreadable page begins. */
static int decode_guarded(const void *p, size_t n, struct upg_msg *m)
{
    struct guarded g;
    const void *q = guard_copy(&g, p, n);
    int rc = upg_decode((const uint8_t *)q, n, m);

    guard_free(&g);
    return rc;
}

static struct upg_msg listeners_msg(uint32_t total, uint32_t first, uint16_t n)
{
    struct upg_msg m = {.type = UPG_LISTENERS, .total = total, .first = first, .n = n};

    for (uint16_t i = 0; i < n && i < UPG_BATCH; i++) {
        m.e[i].kind = (uint8_t)(i % 3);
        snprintf(m.e[i].addr, sizeof(m.e[i].addr), i % 2 ? "[::1]:%u" : "127.0.0.1:%u", 8000 + i);
    }
    return m;
}

/* Encodes m, decodes it back (equal), re-encodes it (the same bytes), and checks that every
 * proper prefix and one byte more are refused. Returns the length. */
static int round_trip(const struct upg_msg *m, uint8_t *buf)
{
    uint8_t again[UPG_MSG_MAX + 1];
    struct upg_msg d;
    int n = upg_encode(m, buf, UPG_MSG_MAX);

    assert_true(n >= UPG_HDR_LEN && n <= UPG_MSG_MAX);
    assert_int_equal(decode_guarded(buf, (size_t)n, &d), 0);
    assert_int_equal(d.type, m->type);
    assert_int_equal(upg_encode(&d, again, sizeof(again)), n);
    assert_memory_equal(again, buf, (size_t)n);
    for (int k = 0; k < n; k++)
        assert_int_equal(decode_guarded(buf, (size_t)k, &d), -EBADMSG);
    memcpy(again, buf, (size_t)n);
    again[n] = 0;
    assert_int_equal(decode_guarded(again, (size_t)n + 1, &d), -EBADMSG);
    return n;
}

static void test_round_trips(void **state)
{
    uint8_t buf[UPG_MSG_MAX];
    struct upg_msg m = {.type = UPG_GET_LISTENERS, .pid = 4194304}, d;

    (void)state;
    assert_int_equal(round_trip(&m, buf), UPG_HDR_LEN + 4);
    assert_int_equal(decode_guarded(buf, UPG_HDR_LEN + 4, &d), 0);
    assert_int_equal(d.pid, 4194304);
    /* the header as documented: "RPUG", version 1, type, length, little-endian */
    assert_memory_equal(buf, "RPUG\x01\x00\x01\x00\x04\x00\x00\x00", UPG_HDR_LEN);
    m = (struct upg_msg){.type = UPG_DRAIN};
    assert_int_equal(round_trip(&m, buf), UPG_HDR_LEN);
    m = (struct upg_msg){.type = UPG_DRAIN_OK};
    assert_int_equal(round_trip(&m, buf), UPG_HDR_LEN);
    m = (struct upg_msg){.type = UPG_ERROR};
    snprintf(m.text, sizeof(m.text), "not serving (draining?)");
    round_trip(&m, buf);
    memset(m.text, 'x', UPG_TEXT_MAX); /* the longest reason */
    round_trip(&m, buf);
    for (uint16_t n = 1; n <= UPG_BATCH; n++) {
        m = listeners_msg(100, 100 - n, n);
        round_trip(&m, buf);
        assert_int_equal(decode_guarded(buf, (size_t)upg_encode(&m, buf, sizeof(buf)), &d), 0);
        assert_int_equal(d.n, n);
        assert_string_equal(d.e[n - 1].addr, m.e[n - 1].addr);
        assert_int_equal(d.e[n - 1].kind, m.e[n - 1].kind);
    }
    m = listeners_msg(0, 0, 0); /* nothing at all is one empty message */
    round_trip(&m, buf);
    m = listeners_msg(UPG_MAX_LISTENERS, UPG_MAX_LISTENERS - UPG_BATCH, UPG_BATCH);
    for (int i = 0; i < UPG_BATCH; i++) /* the longest addresses: the largest message */
        memset(m.e[i].addr, '1', UPG_ADDR_MAX);
    assert_int_equal(round_trip(&m, buf), UPG_MSG_MAX);
}

static void test_header_faults(void **state)
{
    uint8_t buf[UPG_MSG_MAX];
    struct upg_msg m = {.type = UPG_GET_LISTENERS, .pid = 7}, d;
    int n;

    (void)state;
    n = upg_encode(&m, buf, sizeof(buf));
    buf[0] = 'X'; /* magic */
    assert_int_equal(decode_guarded(buf, (size_t)n, &d), -EBADMSG);
    buf[0] = 'R';
    buf[4] = 2; /* another version: said apart from garbage */
    assert_int_equal(decode_guarded(buf, (size_t)n, &d), -EPROTONOSUPPORT);
    buf[4] = 1;
    for (int delta = -1; delta <= 1; delta += 2) { /* a length that is not the record's */
        buf[8] = (uint8_t)(4 + delta);
        assert_int_equal(decode_guarded(buf, (size_t)n, &d), -EBADMSG);
    }
    buf[8] = 4;
    buf[11] = 0x80; /* a length past 2 GiB */
    assert_int_equal(decode_guarded(buf, (size_t)n, &d), -EBADMSG);
    buf[11] = 0;
    for (unsigned t = 0; t < 16; t++) { /* a 4-byte payload is only GET_LISTENERS' */
        put16(buf + 6, (uint16_t)t);
        assert_int_equal(decode_guarded(buf, (size_t)n, &d), t == UPG_GET_LISTENERS ? 0 : -EBADMSG);
    }
    m = (struct upg_msg){.type = UPG_DRAIN};
    n = upg_encode(&m, buf, sizeof(buf));
    put16(buf + 6, 0);
    assert_int_equal(decode_guarded(buf, (size_t)n, &d), -EBADMSG);
    put16(buf + 6, 6); /* past the last type */
    assert_int_equal(decode_guarded(buf, (size_t)n, &d), -EBADMSG);
}

/* A LISTENERS payload written by hand: count fields, then the entries as given. */
static size_t raw_listeners(uint8_t *buf, uint32_t total, uint32_t first, uint16_t n, uint16_t zero,
                            const char *entries, size_t elen)
{
    put32(buf, UPG_MAGIC);
    put16(buf + 4, UPG_VERSION);
    put16(buf + 6, UPG_LISTENERS);
    put32(buf + 8, (uint32_t)(12 + elen));
    put32(buf + 12, total);
    put32(buf + 16, first);
    put16(buf + 20, n);
    put16(buf + 22, zero);
    memcpy(buf + 24, entries, elen);
    return 24 + elen;
}

static void test_listeners_faults(void **state)
{
    static const char one[] = "\x00\x0e"
                              "127.0.0.1:8080";
    uint8_t buf[2 * UPG_MSG_MAX];
    char big[2 + 64 + 1];
    struct upg_msg d;

    (void)state;
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, one, 16), &d), 0);
    assert_string_equal(d.e[0].addr, "127.0.0.1:8080");
    /* counts that do not add up */
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 1, 1, 0, one, 16), &d), -EBADMSG);
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 0, 0, 1, 0, one, 16), &d), -EBADMSG);
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 5, 0, 0, 0, "", 0), &d), -EBADMSG);
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 5, 0xffffffff, 1, 0, one, 16), &d),
                     -EBADMSG);
    assert_int_equal(
        decode_guarded(buf, raw_listeners(buf, UPG_MAX_LISTENERS + 1, 0, 1, 0, one, 16), &d),
        -EBADMSG);
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 1, one, 16), &d), -EBADMSG);
    /* more entries than a batch, or than the payload holds, or bytes left over */
    {
        char nine[9 * 16];
        for (int i = 0; i < 9; i++)
            memcpy(nine + 16 * i, one, 16);
        assert_int_equal(decode_guarded(buf, raw_listeners(buf, 9, 0, 9, 0, nine, 144), &d),
                         -EBADMSG);
        assert_int_equal(decode_guarded(buf, raw_listeners(buf, 9, 0, 8, 0, nine, 128), &d), 0);
        assert_int_equal(decode_guarded(buf, raw_listeners(buf, 9, 0, 2, 0, nine, 31), &d),
                         -EBADMSG);
        assert_int_equal(decode_guarded(buf, raw_listeners(buf, 9, 0, 2, 0, nine, 33), &d),
                         -EBADMSG);
        assert_int_equal(decode_guarded(buf, raw_listeners(buf, 9, 0, 2, 0, nine, 17), &d),
                         -EBADMSG); /* the second entry's length byte is missing */
    }
    /* entries: the kind, the address's length and bytes */
    memcpy(big, one, 16);
    big[0] = 3;
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, big, 16), &d), -EBADMSG);
    big[0] = 2;
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, big, 16), &d), 0);
    big[1] = 0;
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, big, 2), &d), -EBADMSG);
    big[1] = 14;
    for (int bad = 0; bad < 3; bad++) {
        big[2 + 5] = bad == 0 ? ' ' : bad == 1 ? 0 : 0x7f;
        assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, big, 16), &d),
                         -EBADMSG);
    }
    memset(big + 2, '1', 64);
    big[1] = 64; /* one past UPG_ADDR_MAX */
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, big, 66), &d), -EBADMSG);
    big[1] = 63;
    assert_int_equal(decode_guarded(buf, raw_listeners(buf, 1, 0, 1, 0, big, 65), &d), 0);
}

static void test_error_text_faults(void **state)
{
    uint8_t buf[UPG_MSG_MAX + 300];
    struct upg_msg d;

    (void)state;
    put32(buf, UPG_MAGIC);
    put16(buf + 4, UPG_VERSION);
    put16(buf + 6, UPG_ERROR);
    put32(buf + 8, 0);
    assert_int_equal(decode_guarded(buf, UPG_HDR_LEN, &d), -EBADMSG); /* empty */
    memset(buf + UPG_HDR_LEN, 'x', UPG_TEXT_MAX + 1);
    put32(buf + 8, UPG_TEXT_MAX + 1);
    assert_int_equal(decode_guarded(buf, UPG_HDR_LEN + UPG_TEXT_MAX + 1, &d), -EBADMSG);
    put32(buf + 8, 3);
    memcpy(buf + UPG_HDR_LEN, "a\nb", 3);
    assert_int_equal(decode_guarded(buf, UPG_HDR_LEN + 3, &d), -EBADMSG);
    memcpy(buf + UPG_HDR_LEN, "a b", 3);
    assert_int_equal(decode_guarded(buf, UPG_HDR_LEN + 3, &d), 0);
    assert_string_equal(d.text, "a b");
}

static void test_encode_refuses(void **state)
{
    uint8_t buf[UPG_MSG_MAX];
    struct upg_msg m;

    (void)state;
    m = listeners_msg(4, 0, UPG_BATCH + 1);
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m = listeners_msg(4, 2, 3);
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m = listeners_msg(UPG_MAX_LISTENERS + 1, 0, 1);
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m = listeners_msg(4, 0, 1);
    m.e[0].kind = 3;
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m = listeners_msg(4, 0, 1);
    m.e[0].addr[0] = 0;
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    memset(m.e[0].addr, 'a', sizeof(m.e[0].addr)); /* no NUL within reach: too long */
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m = listeners_msg(4, 0, 1);
    assert_int_equal(upg_encode(&m, buf, UPG_HDR_LEN + 13), -ENOSPC);
    assert_int_equal(upg_encode(&m, buf, UPG_HDR_LEN - 1), -ENOSPC);
    m = (struct upg_msg){.type = UPG_ERROR};
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m = (struct upg_msg){.type = 0};
    assert_int_equal(upg_encode(&m, buf, sizeof(buf)), -EINVAL);
}

static void test_sock_path(void **state)
{
    char buf[108], name[120];

    (void)state;
    assert_int_equal(upg_sock_path("/run/ringproxy.pid", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/run/ringproxy.pid.sock");
    memset(name, 'x', 102);
    name[102] = 0; /* + ".sock" is 107: fits with its NUL */
    assert_int_equal(upg_sock_path(name, buf, sizeof(buf)), 0);
    name[102] = 'x';
    name[103] = 0;
    assert_int_equal(upg_sock_path(name, buf, sizeof(buf)), -ENAMETOOLONG);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int open_fds(void)
{
    int n = 0;

    for (int fd = 0; fd < 1024; fd++)
        n += fd_open(fd);
    return n;
}

/* Records and their fds over a socketpair, as the two processes exchange them. */
static void test_transport(void **state)
{
    struct upg_msg m = listeners_msg(2, 0, 2), d;
    int sp[2], p[2], fds[UPG_BATCH], got[UPG_BATCH];
    size_t nfds;
    uint8_t big[UPG_MSG_MAX + 10] = {0};
    char c = 0;
    int before = open_fds();

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(pipe(p), 0);
    fds[0] = p[1];
    fds[1] = p[1];
    assert_int_equal(send_msg(sp[0], &m, fds, 2), 0);
    assert_int_equal(recv_msg(sp[1], &d, got, &nfds), 0);
    assert_int_equal(nfds, 2);
    assert_int_equal(d.n, 2);
    assert_int_equal(write(got[1], "y", 1), 1); /* the received fd is the pipe */
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    assert_true(fcntl(got[0], F_GETFD) & FD_CLOEXEC);
    close_all(got, nfds);
    /* one fd fewer than listeners: refused, and the fd that came is closed */
    assert_int_equal(send_msg(sp[0], &m, fds, 1), 0);
    assert_int_equal(recv_msg(sp[1], &d, got, &nfds), -EBADMSG);
    assert_int_equal(nfds, 0);
    /* an fd on a message that has none */
    m = (struct upg_msg){.type = UPG_DRAIN};
    assert_int_equal(send_msg(sp[0], &m, fds, 1), 0);
    assert_int_equal(recv_msg(sp[1], &d, got, &nfds), -EBADMSG);
    /* a record longer than any message: cut, so refused */
    memcpy(big, "RPUG\x01\x00\x05\x00", 8);
    assert_int_equal(send(sp[0], big, sizeof(big), 0), (ssize_t)sizeof(big));
    assert_int_equal(recv_msg(sp[1], &d, got, &nfds), -EBADMSG);
    /* a timeout, then the peer's close */
    set_timeouts(sp[1], 50);
    assert_int_equal(recv_msg(sp[1], &d, got, &nfds), -EAGAIN);
    close(sp[0]);
    assert_int_equal(recv_msg(sp[1], &d, got, &nfds), -EPIPE);
    close(sp[1]);
    close(p[0]);
    close(p[1]);
    assert_int_equal(open_fds(), before); /* every fd received was closed, refused or not */
}

/* A listening TCP socket on 127.0.0.1 (port 0: any); *port says which. */
static int listening(unsigned *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_inherit_checks(void **state)
{
    char addr[32], other[32];
    unsigned port, port2;
    int fd = listening(&port), fd2 = listening(&port2), plain = socket(AF_INET, SOCK_STREAM, 0);
    const char *ls[2];
    rp_server_config cfg = {.listen = ls, .n_listen = 2, .workers = 1};
    rp_server *s;
    int before = open_fds() - 3;

    (void)state;
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    snprintf(other, sizeof(other), "127.0.0.1:%u", port2);
    ls[0] = addr;
    ls[1] = "[::1]:1";
    s = rp_server_new(&cfg);
    assert_non_null(s);
    assert_int_equal(rp_server_listeners(s, NULL, 0), 0); /* not serving */
    assert_int_equal(rp_server_inherit_listener(s, other, fd2), -ENOENT);
    assert_int_equal(rp_server_inherit_listener(s, "nonsense", fd), -EINVAL);
    assert_int_equal(rp_server_inherit_listener(s, addr, fd2), -EINVAL);   /* another port */
    assert_int_equal(rp_server_inherit_listener(s, addr, plain), -EINVAL); /* not listening */
    assert_int_equal(rp_server_inherit_listener(s, "[::1]:1", fd), -EINVAL);
    assert_int_equal(rp_server_inherit_listener(s, addr, fd), 0);
    assert_int_equal(rp_server_inherit_listener(s, addr, dup(fd)), 0); /* two of a group */
    assert_int_equal(s->n_inherited, 2);
    rp_server_free(s); /* never ran: it closes what it took */
    assert_false(fd_open(fd));
    assert_int_equal(open_fds(), before + 2);
    assert_true(fd_open(fd2) && fd_open(plain)); /* refused: still the caller's */
    close(fd2);
    close(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),      cmocka_unit_test(test_header_faults),
        cmocka_unit_test(test_listeners_faults), cmocka_unit_test(test_error_text_faults),
        cmocka_unit_test(test_encode_refuses),   cmocka_unit_test(test_sock_path),
        cmocka_unit_test(test_transport),        cmocka_unit_test(test_inherit_checks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
