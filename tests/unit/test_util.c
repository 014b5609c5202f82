/* test_util.c: the shared helpers of engine/util.h (case folding and comparison, the token
 * class, hex digits, URL schemes, host[:port] splitting, percent-decoding, container_of, the
 * intrusive list) and engine/bufring.h (a real provided-buffer ring, received into over a
 * socketpair). Spans are placed right before a PROT_NONE page, so a read past their end crashes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "bufring.h"
#include "util.h"

/* ---- guard page --------------------------------------------------------------------------- */

static char *guard_area;
static size_t page;

static int guard_setup(void **state)
{
    (void)state;
    page = (size_t)sysconf(_SC_PAGESIZE);
    guard_area = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_area == MAP_FAILED)
        return -1;
    return mprotect(guard_area + page, page, PROT_NONE);
}

static int guard_teardown(void **state)
{
    (void)state;
    munmap(guard_area, 2 * page);
    return 0;
}

/* A copy of s[0..n) whose last byte is the last one before the guard page (no NUL after it). */
static const char *at_guard(const char *s, size_t n)
{
    char *p = guard_area + page - n;

    memcpy(p, s, n);
    return p;
}

#define G(lit) at_guard((lit), sizeof(lit) - 1), sizeof(lit) - 1

/* ---- container_of --------------------------------------------------------------------------- */

struct outer {
    int a;
    char pad[3];
    struct list_node node;
    long b;
};

static void test_container_of(void **state)
{
    struct outer o;

    (void)state;
    assert_ptr_equal(container_of(&o.node, struct outer, node), &o);
    assert_ptr_equal(container_of(&o.b, struct outer, b), &o);
    assert_ptr_equal(container_of(&o.a, struct outer, a), &o); /* member at offset 0 */
}

/* ---- case ------------------------------------------------------------------------------------ */

static void test_ascii_lower(void **state)
{
    char s[] = "MiXeD-Case_123 \xc4\xd6@[`{";

    (void)state;
    for (int c = 0; c < 256; c++) {
        char want = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        assert_int_equal(ascii_lower((char)c), want);
    }
    str_lower(s);
    assert_string_equal(s, "mixed-case_123 \xc4\xd6@[`{"); /* bytes >= 0x80 and @[`{ unchanged */
    s[0] = 0;
    str_lower(s); /* empty string */
    assert_int_equal(s[0], 0);
}

static void test_mem_ieq(void **state)
{
    (void)state;
    assert_true(mem_ieq(NULL, NULL, 0));
    assert_true(mem_ieq(at_guard("Host", 4), "hOST", 4));
    assert_true(mem_ieq("Content-Length", "cONTENT-lENGTH", 14));
    assert_false(mem_ieq("Content-Length", "Content_Length", 14));
    assert_false(mem_ieq("@", "`", 1)); /* '@' | 0x20 is '`': not the same letter */
    assert_false(mem_ieq("[", "{", 1));
    assert_false(mem_ieq("\xc4", "\xe4", 1)); /* Latin-1 case is not ASCII case */
    assert_true(mem_ieq("a\0b", "A\0B", 3));  /* NUL bytes compare like any other */
    assert_false(mem_ieq("a\0b", "A\0C", 3));
}

static void test_span_ieq(void **state)
{
    (void)state;
    assert_true(span_ieq(G("Content-Length"), "content-length"));
    assert_true(span_ieq(G("HOST"), "host"));
    assert_false(span_ieq("HOST", 3, "host"));
    assert_false(span_ieq(G("Content-Lengt"), "content-length"));   /* span shorter */
    assert_false(span_ieq(G("Content-Lengthx"), "content-length")); /* span longer */
    assert_false(span_ieq(G("Content_Length"), "content-length"));
    assert_true(span_ieq("", 0, ""));
    assert_true(span_ieq(guard_area + page, 0, "")); /* empty span: not read at all */
    assert_false(span_ieq(guard_area + page, 0, "x"));
    assert_false(span_ieq(G("x"), ""));
    assert_false(span_ieq(G("HOST"), "HOST")); /* the literal must be lowercase */
    assert_false(span_ieq("ho\0t", 4, "host"));

    assert_true(span_ieq_span(G("Vary"), "vARY", 4));
    assert_true(span_ieq_span("", 0, "", 0));
    assert_false(span_ieq_span("vary", 4, "var", 3));
    assert_false(span_ieq_span("", 0, "a", 1));
    assert_true(span_ieq_span("HOST", 4, "HoSt", 4)); /* both sides folded */
}

static void test_starts(void **state)
{
    (void)state;
    assert_true(span_istarts(G("Text/HTML"), "text/"));
    assert_true(span_istarts(G("text/"), "text/"));
    assert_false(span_istarts(G("text"), "text/")); /* span shorter than the prefix */
    assert_true(span_istarts(G("anything"), ""));
    assert_true(span_istarts(guard_area + page, 0, ""));
    assert_false(span_istarts(guard_area + page, 0, "t"));
    assert_false(span_istarts(G("TEXT/"), "TEXT/")); /* lowercase literal only */

    assert_true(str_istarts("HTTPS://x", "https://"));
    assert_true(str_istarts("http://", "http://"));
    assert_false(str_istarts("http:/", "http://")); /* stops at the NUL */
    assert_false(str_istarts("", "h"));
    assert_true(str_istarts("", ""));
}

/* ---- HTTP characters -------------------------------------------------------------------- */

static const unsigned char tchar_table[256] = {
#define T(c) HTTP_TCHAR(c)
#define T8(c) T(c), T(c + 1), T(c + 2), T(c + 3), T(c + 4), T(c + 5), T(c + 6), T(c + 7)
#define T64(c)                                                                                     \
    T8(c), T8(c + 8), T8(c + 16), T8(c + 24), T8(c + 32), T8(c + 40), T8(c + 48), T8(c + 56)
    T64(0),
    T64(64),
    T64(128),
    T64(192),
#undef T64
#undef T8
#undef T
};

static void test_tchar(void **state)
{
    static const char specials[] = "!#$%&'*+-.^_`|~";

    (void)state;
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c && strchr(specials, c));
        if (http_is_tchar((unsigned char)c) != want || (tchar_table[c] != 0) != want)
            fail_msg("byte 0x%02x: want %d", c, want);
    }
    assert_false(http_is_tchar(0));
    assert_false(http_is_tchar(':'));
    assert_false(http_is_tchar(' '));
    assert_false(http_is_tchar(0x7f));
    assert_false(http_is_tchar(0xe9));
}

static void test_hex_value(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        assert_int_equal(hex_value(c), want);
    }
    assert_int_equal(hex_value('g'), -1);
    assert_int_equal(hex_value('G'), -1);
    assert_int_equal(hex_value('/'), -1);
    assert_int_equal(hex_value(':'), -1);
    assert_int_equal(hex_value('@'), -1);
    assert_int_equal(hex_value('`'), -1);
    assert_int_equal(hex_value(-1), -1);
    assert_int_equal(hex_value((char)0xc6), -1); /* a negative char: 'F' | 0x80 */
    assert_int_equal(hex_value('F' + 256), -1);
}

static void test_url_scheme(void **state)
{
    bool tls = true, h2 = true;

    (void)state;
    assert_int_equal(url_scheme_len("http://a", &tls, &h2), 7);
    assert_false(tls);
    assert_false(h2);
    assert_int_equal(url_scheme_len("HTTPS://a", &tls, &h2), 8);
    assert_true(tls);
    assert_false(h2);
    assert_int_equal(url_scheme_len("hTtP://", &tls, &h2), 7);
    assert_false(tls);
    assert_int_equal(url_scheme_len("h2c://a", &tls, &h2), 6);
    assert_false(tls);
    assert_true(h2);
    assert_int_equal(url_scheme_len("H2://a", &tls, &h2), 5);
    assert_true(tls);
    assert_true(h2);
    assert_int_equal(url_scheme_len("https:/a", &tls, &h2), 0);
    assert_false(tls);
    assert_false(h2);
    assert_int_equal(url_scheme_len("http:/", &tls, &h2), 0);
    assert_int_equal(url_scheme_len("", &tls, &h2), 0);
    assert_int_equal(url_scheme_len("ftp://a", &tls, &h2), 0);
    assert_int_equal(url_scheme_len(" http://a", &tls, &h2), 0);
    assert_int_equal(url_scheme_len("httpx://a", &tls, &h2), 0);
    assert_int_equal(url_scheme_len("h2x://a", &tls, &h2), 0);
    assert_int_equal(url_scheme_len("h2:/a", &tls, &h2), 0);
}

/* ---- host:port ------------------------------------------------------------------------------ */

static void expect_split(const char *in, int rc, const char *host, const char *port, bool br)
{
    size_t n = strlen(in);
    struct hostport hp;
    int got = hostport_split(at_guard(in, n), n, &hp);

    if (got != rc)
        fail_msg("'%s': rc %d, want %d", in, got, rc);
    if (rc)
        return;
    if (hp.host_len != strlen(host) || memcmp(hp.host, host, hp.host_len))
        fail_msg("'%s': host '%.*s', want '%s'", in, (int)hp.host_len, hp.host, host);
    if (!port != !hp.port)
        fail_msg("'%s': port %s, want %s", in, hp.port ? "set" : "NULL", port ? port : "NULL");
    if (port && (hp.port_len != strlen(port) || memcmp(hp.port, port, hp.port_len)))
        fail_msg("'%s': port '%.*s', want '%s'", in, (int)hp.port_len, hp.port, port);
    if (hp.bracketed != br)
        fail_msg("'%s': bracketed %d", in, hp.bracketed);
}

static void test_hostport(void **state)
{
    struct hostport hp;

    (void)state;
    expect_split("example.com", 0, "example.com", NULL, false);
    expect_split("example.com:8080", 0, "example.com", "8080", false);
    expect_split("127.0.0.1:80", 0, "127.0.0.1", "80", false);
    expect_split("host:", 0, "host", "", false); /* empty port: the caller's to refuse */
    expect_split(":80", 0, "", "80", false);     /* empty host: likewise */
    expect_split("", 0, "", NULL, false);
    expect_split(":", 0, "", "", false);
    expect_split("a:b:c", 0, "a", "b:c", false); /* the first colon splits */
    expect_split("::1", 0, "", ":1", false);     /* IPv6 wants brackets */
    expect_split("[::1]", 0, "::1", NULL, true);
    expect_split("[::1]:8080", 0, "::1", "8080", true);
    expect_split("[fe80::1%eth0]:1", 0, "fe80::1%eth0", "1", true);
    expect_split("[::1]:", 0, "::1", "", true);
    expect_split("[]", 0, "", NULL, true);
    expect_split("[]:80", 0, "", "80", true);
    expect_split("[::1]x", -EINVAL, NULL, NULL, true);
    expect_split("[::1]x:80", -EINVAL, NULL, NULL, true);
    expect_split("[::1", -EINVAL, NULL, NULL, true);
    expect_split("[", -EINVAL, NULL, NULL, true);
    expect_split("a[::1]:80", 0, "a[", ":1]:80", false); /* a '[' counts only first */
    /* only s[0..n) is looked at */
    assert_int_equal(hostport_split("h:80/path:1", 4, &hp), 0);
    assert_int_equal(hp.host_len, 1);
    assert_int_equal(hp.port_len, 2);
    assert_int_equal(hostport_split("[::1]:80", 4, &hp), -EINVAL); /* "[::1" */
    assert_int_equal(hostport_split("[::1]x", 5, &hp), 0);         /* "[::1]" */
    assert_null(hp.port);
}

/* ---- percent-decoding ----------------------------------------------------------------------- */

static void expect_pct(const char *in, bool plus, const char *want, size_t want_len)
{
    char out[64];
    size_t n = strlen(in);
    size_t k = pct_decode(at_guard(in, n), n, out, sizeof(out), plus);

    if (k != want_len || memcmp(out, want, k) || out[k])
        fail_msg("'%s' -> '%.*s' (%zu), want '%s'", in, (int)k, out, k, want);
}

static void test_pct_decode(void **state)
{
    char out[8];

    (void)state;
    expect_pct("", false, "", 0);
    expect_pct("a%20b", false, "a b", 3);
    expect_pct("%41%62%6a%6A", false, "Abjj", 4); /* either case of hex */
    expect_pct("a+b", false, "a+b", 3);
    expect_pct("a+b", true, "a b", 3);
    expect_pct("%2B+", true, "+ ", 2);              /* an escaped '+' stays a '+' */
    expect_pct("%zz%4g%g4", false, "%zz%4g%g4", 9); /* bad hex: kept as sent */
    expect_pct("%", false, "%", 1);                 /* truncated escapes */
    expect_pct("%4", false, "%4", 2);
    expect_pct("ab%4", false, "ab%4", 4);
    expect_pct("%41", false, "A", 1); /* an escape that ends the input */
    expect_pct("%%41", false, "%A", 2);
    expect_pct("a%00b", false, "a\0b", 3); /* %00 is a NUL in the output */
    expect_pct("%e2%82%ac", false, "\xe2\x82\xac", 3);

    /* cap: at most cap - 1 bytes and the NUL */
    assert_int_equal(pct_decode("abcdef", 6, out, 1, false), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(pct_decode("abcdef", 6, out, 4, false), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(pct_decode("%41%42%43%44", 12, out, 3, false), 2);
    assert_string_equal(out, "AB");
    assert_int_equal(pct_decode("a", 1, out, 2, false), 1);
    assert_string_equal(out, "a");
}

/* ---- list ------------------------------------------------------------------------------------ */

struct item {
    int v;
    struct list_node link;
};

static void expect_order(struct list_node *head, const int *want, size_t n)
{
    struct list_node *pos;
    size_t i = 0;

    list_for_each(pos, head)
    {
        assert_true(i < n);
        assert_int_equal(container_of(pos, struct item, link)->v, want[i]);
        assert_ptr_equal(pos->next->prev, pos);
        i++;
    }
    assert_int_equal(i, n);
    assert_int_equal(list_empty(head), n == 0);
}

static void test_list(void **state)
{
    struct list_node head;
    struct item it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};

    (void)state;
    list_init(&head);
    assert_true(list_empty(&head));
    expect_order(&head, NULL, 0);
    list_add(&head, &it[1].link);       /* 1 */
    list_add(&head, &it[0].link);       /* 0 1 */
    list_add_tail(&head, &it[3].link);  /* 0 1 3 */
    list_add(&it[1].link, &it[2].link); /* 0 1 2 3: after a node */
    expect_order(&head, (const int[]){0, 1, 2, 3}, 4);
    list_del(&it[0].link); /* the first */
    expect_order(&head, (const int[]){1, 2, 3}, 3);
    list_del(&it[3].link); /* the last */
    expect_order(&head, (const int[]){1, 2}, 2);
    assert_true(list_empty(&it[3].link)); /* a removed node is self-linked */
    list_del(&it[3].link);                /* so removing it again is harmless */
    expect_order(&head, (const int[]){1, 2}, 2);
    list_add_tail(&it[1].link, &it[0].link); /* before a node */
    expect_order(&head, (const int[]){0, 1, 2}, 3);
    while (!list_empty(&head))
        list_del(head.next);
    expect_order(&head, NULL, 0);
    assert_ptr_equal(head.prev, &head);
}

/* ---- provided-buffer ring ---------------------------------------------------------------------
 */

#define T_BGID 3
#define T_NBUFS 8
#define T_BUFSZ 64

static void test_bufring(void **state)
{
    struct io_uring ring;
    struct io_uring_buf_ring *br = (void *)1;
    struct io_uring_cqe *cqe;
    char *bufs = (void *)1;
    int sv[2], ret;

    (void)state;
    assert_int_equal(io_uring_queue_init(8, &ring, 0), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

    /* a count the kernel refuses (not a power of two): an error, nothing to free */
    ret = bufring_setup(&ring, 3, T_BUFSZ, T_BGID, false, &br, &bufs);
    assert_true(ret < 0);
    assert_null(br);
    assert_null(bufs);

    assert_int_equal(bufring_setup(&ring, T_NBUFS, T_BUFSZ, T_BGID, true, &br, &bufs), 0);
    assert_non_null(br);
    assert_non_null(bufs);
    assert_int_equal((uintptr_t)bufs % 4096, 0);
    for (size_t i = 0; i < (size_t)T_NBUFS * T_BUFSZ; i++) /* prefault zeroed them */
        assert_int_equal(bufs[i], 0);
    assert_int_equal(br->tail, T_NBUFS); /* every buffer handed to the kernel */

    /* the same group again: the kernel says it is taken */
    {
        struct io_uring_buf_ring *br2;
        char *bufs2;
        assert_true(bufring_setup(&ring, T_NBUFS, T_BUFSZ, T_BGID, false, &br2, &bufs2) < 0);
        assert_null(br2);
        assert_null(bufs2);
    }

    /* receive into it: the first buffer the kernel picks is buffer 0 */
    assert_int_equal(write(sv[1], "hello", 5), 5);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recv(sqe, sv[0], NULL, T_BUFSZ, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = T_BGID;
    assert_int_equal(io_uring_submit_and_wait(&ring, 1), 1);
    assert_int_equal(io_uring_peek_cqe(&ring, &cqe), 0);
    assert_int_equal(cqe->res, 5);
    assert_true(cqe->flags & IORING_CQE_F_BUFFER);
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    assert_true(bid < T_NBUFS);
    assert_memory_equal(bufs + (size_t)bid * T_BUFSZ, "hello", 5);
    io_uring_cqe_seen(&ring, cqe);

    bufring_free(&ring, br, T_BGID, bufs); /* unregisters: the group can be set up again */
    assert_int_equal(bufring_setup(&ring, T_NBUFS, T_BUFSZ, T_BGID, false, &br, &bufs), 0);
    io_uring_queue_exit(&ring); /* unregisters it */
    bufring_free(NULL, br, T_BGID, bufs);
    bufring_free(NULL, NULL, T_BGID, NULL);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_container_of), cmocka_unit_test(test_ascii_lower),
        cmocka_unit_test(test_mem_ieq),      cmocka_unit_test(test_span_ieq),
        cmocka_unit_test(test_starts),       cmocka_unit_test(test_tchar),
        cmocka_unit_test(test_hex_value),    cmocka_unit_test(test_url_scheme),
        cmocka_unit_test(test_hostport),     cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_list),         cmocka_unit_test(test_bufring),
    };

    return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
