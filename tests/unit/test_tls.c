/* test_tls.c: cmocka tests of tls/ with a client and a server wired together in memory.
 *
 * Certificates are made with the openssl CLI in a temporary directory at start; each side's
 * sink appends to the other side's inbox, and pump() moves bytes until both are quiet.
 */
#include "tls.h"

#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <wolfssl/options.h>

#include <wolfssl/ssl.h>

static char dir[] = "/tmp/test_tls_XXXXXX";
static char cert[256], key[256], sni_cert[256], sni_key[256], other_cert[256], other_key[256];

struct inbox {
    char *buf;
    size_t len, cap;
};

struct side {
    struct tls_conn *t;
    struct inbox in;  /* ciphertext from the peer, not yet fed */
    struct inbox got; /* plaintext received */
    int err;          /* last error from tls_recv */
};

struct pair {
    struct tls_ctx *sctx, *cctx;
    struct side s, c;
    size_t chunk; /* ciphertext bytes fed per tls_recv; 0 = TLS_FEED_MAX */
};

static void append(struct inbox *b, const char *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->buf = realloc(b->buf, b->cap);
        assert_non_null(b->buf);
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static int sink(void *arg, const char *p, size_t n)
{
    append(arg, p, n);
    return 0;
}

static void make_cert(const char *cn, const char *san, const char *c, const char *k)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=%s -addext subjectAltName=%s 2>/dev/null",
             k, c, cn, san);
    assert_int_equal(system(cmd), 0);
}

static int setup_certs(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(sni_cert, sizeof(sni_cert), "%s/sc.pem", dir);
    snprintf(sni_key, sizeof(sni_key), "%s/sk.pem", dir);
    snprintf(other_cert, sizeof(other_cert), "%s/oc.pem", dir);
    snprintf(other_key, sizeof(other_key), "%s/ok.pem", dir);
    make_cert("test.local", "DNS:test.local,DNS:*.wild.local", cert, key);
    make_cert("api.local", "DNS:api.local", sni_cert, sni_key);
    make_cert("other.local", "DNS:other.local", other_cert, other_key);
    return tls_global_init();
}

static int teardown_certs(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Feeds one side what the peer sent (in `chunk`-byte pieces) and drains its plaintext. */
static bool feed(struct side *d, size_t chunk)
{
    char out[7001]; /* odd on purpose: records get split across reads */
    bool moved = false;

    while (d->in.len && !d->err) {
        size_t max = chunk ? chunk : TLS_FEED_MAX;
        size_t n = max < d->in.len ? max : d->in.len;
        ssize_t r = tls_recv(d->t, d->in.buf, n, out, sizeof(out));

        memmove(d->in.buf, d->in.buf + n, d->in.len - n);
        d->in.len -= n;
        moved = true;
        while (r > 0) {
            append(&d->got, out, (size_t)r);
            r = tls_recv(d->t, NULL, 0, out, sizeof(out));
        }
        if (r < 0)
            d->err = (int)r;
    }
    return moved;
}

static void pump(struct pair *p)
{
    while (feed(&p->s, p->chunk) | feed(&p->c, p->chunk))
        ;
}

static void pair_open(struct pair *p, const char *sni, const struct tls_session *sess)
{
    p->s.t = tls_conn_new(p->sctx, NULL, sink, &p->c.in);
    p->c.t = tls_conn_new(p->cctx, sni, sink, &p->s.in);
    assert_non_null(p->s.t);
    assert_non_null(p->c.t);
    if (sess)
        assert_int_equal(tls_conn_set_session(p->c.t, sess), 0);
    assert_int_equal(tls_connect(p->c.t), 0);
    pump(p);
}

static void pair_close(struct pair *p)
{
    tls_conn_free(p->s.t);
    tls_conn_free(p->c.t);
    free(p->s.in.buf);
    free(p->s.got.buf);
    free(p->c.in.buf);
    free(p->c.got.buf);
    memset(&p->s, 0, sizeof(p->s));
    memset(&p->c, 0, sizeof(p->c));
}

static struct tls_ctx *server_ctx(void)
{
    char err[256];
    struct tls_ctx *c = tls_server_new(cert, key, err, sizeof(err));

    assert_non_null(c);
    return c;
}

static struct tls_ctx *client_ctx(const char *ca, bool verify)
{
    char err[256];
    struct tls_ctx *c = tls_client_new(ca, verify, err, sizeof(err));

    assert_non_null(c);
    return c;
}

static void pair_free(struct pair *p)
{
    pair_close(p);
    tls_ctx_free(p->sctx);
    tls_ctx_free(p->cctx);
}

static void assert_up(struct pair *p)
{
    assert_int_equal(p->s.err, 0);
    assert_int_equal(p->c.err, 0);
    assert_true(tls_handshake_done(p->s.t));
    assert_true(tls_handshake_done(p->c.t));
}

static void test_handshake_tls13(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};

    (void)state;
    pair_open(&p, "test.local", NULL);
    assert_up(&p);
    assert_string_equal(tls_version(p.s.t), "TLSv1.3");
    assert_string_equal(tls_version(p.c.t), "TLSv1.3");
    assert_string_equal(tls_alpn(p.s.t), "http/1.1");
    assert_string_equal(tls_alpn(p.c.t), "http/1.1");
    assert_string_equal(tls_sni(p.s.t), "test.local");
    assert_false(tls_resumed(p.s.t));
    pair_free(&p);
}

static void test_handshake_tls12(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};

    (void)state;
    assert_int_equal(tls_ctx_set_max_version(p.cctx, "TLSv1.2"), 0);
    assert_int_equal(tls_ctx_set_max_version(p.cctx, "SSLv3"), -EINVAL);
    pair_open(&p, "test.local", NULL);
    assert_up(&p);
    assert_string_equal(tls_version(p.s.t), "TLSv1.2");
    assert_string_equal(tls_alpn(p.s.t), "http/1.1");
    pair_free(&p);
}

static void test_send_before_handshake(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(NULL, false)};

    (void)state;
    p.c.t = tls_conn_new(p.cctx, "test.local", sink, &p.s.in);
    p.s.t = tls_conn_new(p.sctx, NULL, sink, &p.c.in);
    assert_int_equal(tls_send(p.c.t, "x", 1), -EAGAIN);
    assert_int_equal(tls_connect(p.s.t), -EINVAL);
    assert_int_equal(tls_connect(p.c.t), 0);
    assert_false(tls_handshake_done(p.c.t));
    assert_null(tls_version(p.c.t));
    pump(&p);
    assert_up(&p);
    pair_free(&p);
}

static char *pattern(size_t n)
{
    char *b = malloc(n);

    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(i * 7 + i / 251);
    return b;
}

/* Sends n bytes from one side in odd pieces and checks the other side got them all. */
static void transfer(struct pair *p, struct side *from, struct side *to, size_t n)
{
    static const size_t pieces[] = {1, 4093, 16384, 777, 16385, 65537};
    char *b = pattern(n);
    size_t off = 0;

    for (size_t i = 0; off < n; i++) {
        size_t k = pieces[i % 6] < n - off ? pieces[i % 6] : n - off;

        assert_int_equal(tls_send(from->t, b + off, k), (ssize_t)k);
        off += k;
        if (i % 3 == 0)
            pump(p);
    }
    pump(p);
    assert_int_equal(to->got.len, n);
    assert_memory_equal(to->got.buf, b, n);
    to->got.len = 0;
    free(b);
}

static void test_data_both_ways(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};
    static const size_t sizes[] = {1, 16 * 1024, 1024 * 1024};

    (void)state;
    pair_open(&p, "test.local", NULL);
    assert_up(&p);
    assert_int_equal(tls_send(p.c.t, "", 0), 0);
    for (size_t i = 0; i < 3; i++) {
        transfer(&p, &p.c, &p.s, sizes[i]);
        transfer(&p, &p.s, &p.c, sizes[i]);
    }
    assert_up(&p);
    pair_free(&p);
}

static void test_one_byte_records(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true), .chunk = 1};

    (void)state;
    pair_open(&p, "test.local", NULL);
    assert_up(&p);
    transfer(&p, &p.c, &p.s, 20000);
    transfer(&p, &p.s, &p.c, 3000);
    pair_free(&p);
}

/* Several records in one feed, and a feed that ends mid-record, with a small out buffer. */
static void test_many_records_one_feed(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};
    char out[100], *b = pattern(5000);
    size_t got = 0;
    ssize_t r;

    (void)state;
    pair_open(&p, "test.local", NULL);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tls_send(p.c.t, b + i * 1000, 1000), 1000);
    size_t half = p.s.in.len / 2 + 3;
    r = tls_recv(p.s.t, p.s.in.buf, half, out, sizeof(out));
    while (r > 0) {
        assert_memory_equal(out, b + got, (size_t)r);
        got += (size_t)r;
        r = tls_recv(p.s.t, NULL, 0, out, sizeof(out));
    }
    assert_int_equal(r, 0);
    r = tls_recv(p.s.t, p.s.in.buf + half, p.s.in.len - half, out, sizeof(out));
    while (r > 0) {
        assert_memory_equal(out, b + got, (size_t)r);
        got += (size_t)r;
        r = tls_recv(p.s.t, NULL, 0, out, sizeof(out));
    }
    assert_int_equal(r, 0);
    assert_int_equal(got, 5000);
    p.s.in.len = 0;
    free(b);
    pair_free(&p);
}

/* Which certificate did the client get? Its subject's CN says. */
static void assert_peer_cn(struct pair *p, const char *sni, const char *cn)
{
    pair_open(p, sni, NULL);
    assert_up(p);
    /* the test reaches into the connection: the WOLFSSL is its first member */
    WOLFSSL *ssl = *(WOLFSSL **)p->c.t;
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(ssl);
    char buf[256];

    assert_non_null(x);
    assert_non_null(wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x),
                                                      NID_commonName, buf, sizeof(buf)));
    assert_string_equal(buf, cn);
    wolfSSL_X509_free(x);
    pair_close(p);
}

static void test_sni_picks_certificate(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(NULL, false)};
    char err[256];

    (void)state;
    assert_int_equal(tls_server_add_sni(p.sctx, "API.local", sni_cert, sni_key, err, sizeof(err)),
                     0);
    assert_int_equal(
        tls_server_add_sni(p.sctx, "*.star.local", other_cert, other_key, err, sizeof(err)), 0);
    assert_peer_cn(&p, "api.local", "api.local");
    assert_peer_cn(&p, "Api.Local", "api.local");
    assert_peer_cn(&p, "x.star.local", "other.local");
    assert_peer_cn(&p, "a.b.star.local", "test.local");
    assert_peer_cn(&p, "star.local", "test.local");
    assert_peer_cn(&p, "unknown.local", "test.local");
    assert_peer_cn(&p, NULL, "test.local");
    assert_int_equal(
        tls_server_add_sni(p.sctx, "x.local", "/nonexistent.pem", sni_key, err, sizeof(err)),
        -ENOENT);
    assert_non_null(strstr(err, "cannot read"));
    assert_int_equal(tls_server_add_sni(p.sctx, "y.local", sni_cert, key, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    pair_free(&p);
}

static void test_sni_verified(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(sni_cert, true)};
    char err[256];

    (void)state;
    assert_int_equal(tls_server_add_sni(p.sctx, "api.local", sni_cert, sni_key, err, sizeof(err)),
                     0);
    pair_open(&p, "api.local", NULL);
    assert_up(&p);
    assert_string_equal(tls_sni(p.s.t), "api.local");
    pair_free(&p);
}

static void test_verify(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(other_cert, true)};

    (void)state;
    pair_open(&p, "test.local", NULL); /* untrusted */
    assert_int_equal(p.c.err, -EPROTO);
    assert_non_null(tls_error(p.c.t));
    assert_false(tls_handshake_done(p.c.t));
    assert_int_equal(p.s.err, -EPROTO); /* the client's alert */
    pair_close(&p);
    tls_ctx_free(p.cctx);

    p.cctx = client_ctx(cert, true); /* trusted, right name, and a wildcard name */
    pair_open(&p, "test.local", NULL);
    assert_up(&p);
    pair_close(&p);
    pair_open(&p, "a.wild.local", NULL);
    assert_up(&p);
    pair_close(&p);
    pair_open(&p, "wrong.local", NULL); /* trusted, wrong name */
    assert_int_equal(p.c.err, -EPROTO);
    pair_close(&p);
    tls_ctx_free(p.cctx);

    p.cctx = client_ctx(NULL, true); /* the system store does not know our cert */
    pair_open(&p, "test.local", NULL);
    assert_int_equal(p.c.err, -EPROTO);
    pair_free(&p);
}

static void test_bad_files(void **state)
{
    char err[256];

    (void)state;
    assert_null(tls_server_new("/nonexistent/c.pem", key, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/c.pem: cannot read"));
    assert_null(tls_server_new(cert, sni_key, err, sizeof(err)));
    assert_string_equal(err, "key does not match certificate");
    assert_null(tls_server_new(key, key, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM certificate"));
    assert_null(tls_client_new("/nonexistent/ca.pem", true, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot read"));
}

static void test_garbage(void **state)
{
    struct tls_ctx *s = server_ctx();
    struct inbox out = {0};
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[64];

    (void)state;
    struct tls_conn *t = tls_conn_new(s, NULL, sink, &out);
    assert_int_equal(tls_recv(t, junk, sizeof(junk) - 1, buf, sizeof(buf)), -EPROTO);
    assert_non_null(tls_error(t));
    assert_true(strlen(tls_error(t)) > 0);
    assert_int_equal(tls_recv(t, NULL, 0, buf, sizeof(buf)), -EPROTO); /* sticky */
    assert_false(tls_handshake_done(t));
    tls_conn_free(t);

    /* a valid record header with a garbage handshake body */
    static const char rec[] = {0x16, 0x03, 0x01, 0x00, 0x08, 1, 0, 0, 4, 9, 9, 9, 9};
    t = tls_conn_new(s, NULL, sink, &out);
    assert_int_equal(tls_recv(t, rec, sizeof(rec), buf, sizeof(buf)), -EPROTO);
    tls_conn_free(t);
    free(out.buf);
    tls_ctx_free(s);
}

static void test_resume(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};
    const char *versions[] = {"TLSv1.3", "TLSv1.2"};

    (void)state;
    for (int v = 0; v < 2; v++) {
        assert_int_equal(tls_ctx_set_max_version(p.cctx, versions[v]), 0);
        pair_open(&p, "test.local", NULL);
        assert_up(&p);
        transfer(&p, &p.s, &p.c, 10); /* carries the TLS 1.3 ticket to the client */
        struct tls_session *sess = tls_conn_get_session(p.c.t);
        assert_non_null(sess);
        assert_null(tls_conn_get_session(p.s.t));
        pair_close(&p);

        pair_open(&p, "test.local", sess);
        assert_up(&p);
        assert_string_equal(tls_version(p.c.t), versions[v]);
        assert_true(tls_resumed(p.s.t));
        assert_true(tls_resumed(p.c.t));
        assert_string_equal(tls_alpn(p.s.t), "http/1.1");
        transfer(&p, &p.c, &p.s, 1000);
        pair_close(&p);
        tls_session_free(sess);
    }
    pair_free(&p);
}

/* A ticket from another server context (other keys) is refused: full handshake. */
static void test_resume_foreign_ticket(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};

    (void)state;
    pair_open(&p, "test.local", NULL);
    transfer(&p, &p.s, &p.c, 10);
    struct tls_session *sess = tls_conn_get_session(p.c.t);
    assert_non_null(sess);
    pair_close(&p);
    tls_ctx_free(p.sctx);
    p.sctx = server_ctx();
    pair_open(&p, "test.local", sess);
    assert_up(&p);
    assert_false(tls_resumed(p.s.t));
    tls_session_free(sess);
    pair_free(&p);
}

static void test_shutdown(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};

    (void)state;
    pair_open(&p, "test.local", NULL);
    transfer(&p, &p.c, &p.s, 100);
    tls_shutdown(p.c.t);
    pump(&p);
    assert_int_equal(p.s.err, -ECONNRESET);
    assert_int_equal(tls_send(p.s.t, "x", 1), -ECONNRESET);
    pair_close(&p);

    pair_open(&p, "test.local", NULL);
    tls_shutdown(p.s.t);
    pump(&p);
    assert_int_equal(p.c.err, -ECONNRESET);
    pair_free(&p);
}

static int fail_sink(void *arg, const char *p, size_t n)
{
    (void)arg;
    (void)p;
    (void)n;
    return -EPIPE;
}

static void test_sink_error(void **state)
{
    struct tls_ctx *c = client_ctx(NULL, false);
    struct tls_conn *t = tls_conn_new(c, "x.local", fail_sink, NULL);

    (void)state;
    assert_int_equal(tls_connect(t), -EPIPE);
    assert_int_equal(tls_recv(t, NULL, 0, NULL, 0), -EPIPE);
    tls_conn_free(t);
    tls_ctx_free(c);
}

static void test_unread_bound(void **state)
{
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx(cert, true)};
    char *b = pattern(200000), out[16];
    ssize_t r;

    (void)state;
    pair_open(&p, "test.local", NULL);
    assert_int_equal(tls_send(p.c.t, b, 200000), 200000);
    /* feeding far more than TLS_PENDING_MAX without draining is refused */
    r = tls_recv(p.s.t, p.s.in.buf, p.s.in.len, out, sizeof(out));
    assert_int_equal(r, -ENOBUFS);
    p.s.in.len = 0;
    free(b);
    pair_free(&p);
}

/* Bytes of heap an idle, established server+client pair holds, per pair. */
static void test_idle_memory(void **state)
{
    enum { N = 1000 };
    struct pair *p = calloc(N, sizeof(*p));
    struct tls_ctx *s = server_ctx(), *c = client_ctx(cert, true);

    (void)state;
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        p[i].sctx = s;
        p[i].cctx = c;
    }
    /* one warm-up, so that lazily built shared state is not counted */
    pair_open(&p[0], "test.local", NULL);
    size_t before = mallinfo2().uordblks;
    for (int i = 1; i < N; i++) {
        pair_open(&p[i], "test.local", NULL);
        transfer(&p[i], &p[i].c, &p[i].s, 100);
        transfer(&p[i], &p[i].s, &p[i].c, 100);
        assert_up(&p[i]);
        free(p[i].s.in.buf); /* the test's own buffers do not count */
        free(p[i].s.got.buf);
        free(p[i].c.in.buf);
        free(p[i].c.got.buf);
        memset(&p[i].s.in, 0, sizeof(p[i].s.in));
        memset(&p[i].s.got, 0, sizeof(p[i].s.got));
        memset(&p[i].c.in, 0, sizeof(p[i].c.in));
        memset(&p[i].c.got, 0, sizeof(p[i].c.got));
    }
    size_t after = mallinfo2().uordblks;
    for (int i = 1; i < N; i++) {
        tls_conn_free(p[i].s.t);
        tls_conn_free(p[i].c.t);
    }
    size_t freed = mallinfo2().uordblks;
    print_message("idle established pair: %zu bytes (server+client), %zu left after free\n",
                  (after - before) / (N - 1), freed > before ? freed - before : 0);
    /* measure the server side alone */
    struct tls_conn **srv = calloc(N, sizeof(*srv));
    for (int i = 1; i < N; i++) {
        pair_open(&p[i], "test.local", NULL);
        srv[i] = p[i].s.t;
        p[i].s.t = NULL;
        pair_close(&p[i]);
    }
    size_t s_after = mallinfo2().uordblks;
    for (int i = 1; i < N; i++)
        tls_conn_free(srv[i]);
    size_t s_freed = mallinfo2().uordblks;
    print_message("idle established server conn: %zu bytes\n", (s_after - s_freed) / (N - 1));
    free(srv);
    pair_close(&p[0]);
    free(p);
    tls_ctx_free(s);
    tls_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_tls13),
        cmocka_unit_test(test_handshake_tls12),
        cmocka_unit_test(test_send_before_handshake),
        cmocka_unit_test(test_data_both_ways),
        cmocka_unit_test(test_one_byte_records),
        cmocka_unit_test(test_many_records_one_feed),
        cmocka_unit_test(test_sni_picks_certificate),
        cmocka_unit_test(test_sni_verified),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_resume_foreign_ticket),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_sink_error),
        cmocka_unit_test(test_unread_bound),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
