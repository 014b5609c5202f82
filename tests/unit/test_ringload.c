/* test_ringload.c: unit tests of ringload's own logic (tools/ringload.c, included with its main()
 * left out): option and duration parsing, URL parsing, the request it builds, and response
 * accounting, feeding canned responses whole and one byte at a time through the per-connection
 * state machine; with --ws, the frame encoder and decoder at the edge lengths, the handshake's
 * key and accept, and a connection's upgrade and echoes. Parser inputs sit right before a
 * PROT_NONE page, so an over-read crashes.
 */
#ifndef RINGLOAD_NO_MAIN
#define RINGLOAD_NO_MAIN
#endif
#include "../../tools/ringload.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>

#include <cmocka.h>

/* ---------------------------------------------------------------- helpers */

static long page_size(void)
{
    return sysconf(_SC_PAGESIZE);
}

/* Copies n bytes so that they end right before an inaccessible page. */
static char *guarded(const char *s, size_t n)
{
    size_t pg = (size_t)page_size(), span = (n + pg - 1) / pg * pg + pg;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + span - pg, pg, PROT_NONE), 0);
    memcpy(m + span - pg - n, s, n);
    return m + span - pg - n;
}

static void unguard(char *p, size_t n)
{
    size_t pg = (size_t)page_size(), span = (n + pg - 1) / pg * pg + pg;

    munmap(p + n + pg - span, span);
}

/* Runs parse_args on a NULL-terminated list of arguments (argv[0] is added). */
static int parse(struct opts *o, const char *const *args)
{
    static char store[32][256];
    char *argv[33];
    int argc = 0;

    argv[argc++] = strcpy(store[0], "ringload");
    for (; *args; args++) {
        assert_true(argc < 32 && strlen(*args) < sizeof(store[0]));
        argv[argc] = strcpy(store[argc], *args);
        argc++;
    }
    argv[argc] = NULL;
    return parse_args(o, argc, argv);
}

#define PARSE(o, ...) parse((o), (const char *const[]){__VA_ARGS__, NULL})

/* ---------------------------------------------------------------- durations and options */

static void test_durations(void **state)
{
    uint64_t ns = 0;

    (void)state;
    assert_int_equal(parse_duration("10s", &ns), 0);
    assert_true(ns == 10000000000ULL);
    assert_int_equal(parse_duration("1m", &ns), 0);
    assert_true(ns == 60000000000ULL);
    assert_int_equal(parse_duration("2h", &ns), 0);
    assert_true(ns == 7200000000000ULL);
    assert_int_equal(parse_duration("500ms", &ns), 0);
    assert_true(ns == 500000000ULL);
    assert_int_equal(parse_duration("250us", &ns), 0);
    assert_true(ns == 250000ULL);
    assert_int_equal(parse_duration("1.5", &ns), 0);
    assert_true(ns == 1500000000ULL);
    assert_int_equal(parse_duration("0.5m", &ns), 0);
    assert_true(ns == 30000000000ULL);
    static const char *const bad[] = {"",      "0",   "0s",  "-1s", "+1s", "10x",  "s",
                                      "1e400", " 1s", "1s ", "nan", "inf", "10 s", "1ss"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_duration(bad[i], &ns) != -EINVAL)
            fail_msg("'%s' accepted", bad[i]);
    }
}

static void test_options_defaults(void **state)
{
    struct opts o;

    (void)state;
    assert_int_equal(PARSE(&o, "http://127.0.0.1:8080/"), -1);
    assert_int_equal(o.conns, 10);
    assert_int_equal(o.threads, 2);
    assert_int_equal(o.pipeline, 1);
    assert_true(o.duration_ns == 10000000000ULL);
    assert_true(o.timeout_ns == 2000000000ULL);
    assert_string_equal(o.method, "GET");
    assert_int_equal(o.nheaders, 0);
    assert_false(o.latency || o.close || o.json || o.insecure);
    assert_true(o.rate == 0 && o.count == 0);
    assert_string_equal(o.url.port, "8080");
}

static void test_options_all(void **state)
{
    struct opts o;

    (void)state;
    assert_int_equal(PARSE(&o, "-c", "64", "-t", "4", "-d", "1m", "-H", "X-A: 1", "-H",
                           "Host: example.com", "-m", "POST", "--latency", "--json", "-k",
                           "--timeout", "500ms", "--pipeline", "8", "http://h/x"),
                     -1);
    assert_int_equal(o.conns, 64);
    assert_int_equal(o.threads, 4);
    assert_true(o.duration_ns == 60000000000ULL);
    assert_int_equal(o.nheaders, 2);
    assert_string_equal(o.headers[0], "X-A: 1");
    assert_string_equal(o.headers[1], "Host: example.com");
    assert_string_equal(o.method, "POST");
    assert_true(o.latency && o.json && o.insecure);
    assert_true(o.timeout_ns == 500000000ULL);
    assert_int_equal(o.pipeline, 8);
    /* long forms, -n without -d runs until the count, -R */
    assert_int_equal(PARSE(&o, "--connections=3", "--threads", "1", "--requests", "500", "--rate",
                           "250.5", "--close", "http://h"),
                     -1);
    assert_int_equal(o.conns, 3);
    assert_true(o.count == 500 && o.duration_ns == 0);
    assert_true(o.rate == 250.5 && o.close);
    /* https:// with -k */
    assert_int_equal(PARSE(&o, "-k", "https://[::1]:8443/"), -1);
    assert_true(o.insecure && o.url.tls);
    assert_string_equal(o.url.port, "8443");
    assert_int_equal(PARSE(&o, "https://example.com"), -1);
    assert_true(!o.insecure && o.url.tls);
    assert_string_equal(o.url.port, "443");
    /* -n with -d: both apply */
    assert_int_equal(PARSE(&o, "-n", "5", "-d", "2s", "http://h"), -1);
    assert_true(o.count == 5 && o.duration_ns == 2000000000ULL);
    /* -h prints usage and exits 0 */
    assert_int_equal(PARSE(&o, "-h"), 0);
}

static void test_options_bad(void **state)
{
    static const char *const cases[][6] = {
        {"-c", "0", "http://h"},
        {"-c", "abc", "http://h"},
        {"-c", "-5", "http://h"},
        {"-t", "0", "http://h"},
        {"-c", "1", "-t", "2", "http://h"},
        {"-d", "10x", "http://h"},
        {"-d", "0", "http://h"},
        {"-n", "0", "http://h"},
        {"-H", "NoColon", "http://h"},
        {"-H", ": empty name", "http://h"},
        {"-H", "Bad Name: v", "http://h"},
        {"-m", "GE T", "http://h"},
        {"-R", "0", "http://h"},
        {"-R", "fast", "http://h"},
        {"--timeout", "never", "http://h"},
        {"--pipeline", "0", "http://h"},
        {"--pipeline", "2", "--close", "http://h"},
        {"--pipeline", "2", "-R", "100", "http://h"},
        {"--bogus", "http://h"},
        {"-x", "http://h"},
        {"-c"},
        {"http://a", "http://b"},
        {"ftp://h/"},
        {"http://"},
        {"ftps://example.com/"},
        {"-k", "https://[::1/"},
    };
    struct opts o;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[8] = {0};

        for (size_t k = 0; k < 6 && cases[i][k]; k++)
            argv[k] = cases[i][k];
        if (parse(&o, argv) != 2)
            fail_msg("case %zu (%s %s) not rejected", i, cases[i][0], cases[i][1]);
    }
    /* no URL at all */
    assert_int_equal(parse(&o, (const char *const[]){NULL}), 2);
}

/* ---------------------------------------------------------------- URLs */

static void test_url_basic(void **state)
{
    struct url u;

    (void)state;
    assert_int_equal(parse_url("http://example.com", &u), 0);
    assert_string_equal(u.host, "example.com");
    assert_string_equal(u.port, "80");
    assert_string_equal(u.authority, "example.com");
    assert_string_equal(u.path, "/");
    assert_int_equal(parse_url("HTTP://127.0.0.1:8080/a/b?c=d#frag", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "8080");
    assert_string_equal(u.authority, "127.0.0.1:8080");
    assert_string_equal(u.path, "/a/b?c=d");
    assert_int_equal(parse_url("http://h?x=1", &u), 0);
    assert_string_equal(u.path, "/?x=1");
    assert_int_equal(parse_url("http://h:1/", &u), 0);
    assert_string_equal(u.port, "1");
    assert_int_equal(parse_url("http://h:65535/", &u), 0);
}

static void test_url_ipv6(void **state)
{
    struct url u;

    (void)state;
    assert_int_equal(parse_url("http://[::1]:9000/x", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "9000");
    assert_string_equal(u.authority, "[::1]:9000");
    assert_string_equal(u.path, "/x");
    assert_int_equal(parse_url("http://[fe80::1%25eth0]/", &u), 0);
    assert_string_equal(u.port, "80");
    assert_int_equal(parse_url("http://[::1/", &u), -EINVAL);
    assert_int_equal(parse_url("http://[]/", &u), -EINVAL);
    assert_int_equal(parse_url("http://[::1]x/", &u), -EINVAL);
    assert_int_equal(parse_url("http://[host]/", &u), -EINVAL);
}

static void test_url_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "example.com",
        "ftp://h/",
        "http://",
        "http:///path",
        "http://h:",
        "http://h:0/",
        "http://h:65536/",
        "http://h:8x",
        "http://u@h/",
        "http://:80/",
        "http://h/a b",
        "http://h:123456/",
        "http//h/",
    };
    struct url u;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_url(bad[i], &u) != -EINVAL)
            fail_msg("'%s' accepted", bad[i]);
    }
    assert_false(u.tls);
    /* https:// */
    assert_int_equal(parse_url("https://example.com/", &u), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "example.com");
    assert_string_equal(u.port, "443");
    assert_string_equal(u.authority, "example.com");
    assert_string_equal(u.path, "/");
    assert_int_equal(parse_url("HTTPS://example.com:8443/a?b", &u), 0);
    assert_true(u.tls);
    assert_string_equal(u.port, "8443");
    assert_string_equal(u.authority, "example.com:8443");
    assert_string_equal(u.path, "/a?b");
    assert_int_equal(parse_url("https://[::1]/x", &u), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "443");
    assert_int_equal(parse_url("http://example.com/", &u), 0);
    assert_false(u.tls);
    assert_string_equal(u.port, "80");
    assert_int_equal(parse_url("https://", &u), -EINVAL);
    assert_int_equal(parse_url("https://h:0/", &u), -EINVAL);
    assert_int_equal(parse_url("https//h/", &u), -EINVAL);
}

/* ---------------------------------------------------------------- the request */

static void test_request_bytes(void **state)
{
    struct opts o;
    char out[512];
    size_t n;

    (void)state;
    assert_int_equal(PARSE(&o, "-H", "X-A: 1", "http://h:81/p?q"), -1);
    n = build_request(&o, NULL, 0, out);
    assert_int_equal(n, build_request(&o, NULL, 0, NULL));
    out[n] = 0;
    assert_string_equal(out, "GET /p?q HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\n\r\n");
    assert_int_equal(PARSE(&o, "-m", "POST", "-H", "host: other", "--close", "http://h/"), -1);
    n = build_request(&o, "abc", 3, out);
    out[n] = 0;
    assert_string_equal(out, "POST / HTTP/1.1\r\nhost: other\r\nContent-Length: 3\r\n"
                             "Connection: close\r\n\r\nabc");
}

/* ---------------------------------------------------------------- response framing */

struct fed {
    int responses;
    uint16_t status[8];
    bool keep[8];
    bool error;
};

/* Feeds `s` in pieces of `step` bytes (0: all at once) from guarded copies. */
static struct fed feed(const char *s, size_t step, enum h1_method m, bool eof)
{
    static char hbuf[HEAD_MAX];
    struct resp r = {.hbuf = hbuf};
    struct fed f = {0};
    size_t len = strlen(s), off = 0;

    while (off < len && !f.error) {
        size_t n = step && len - off > step ? step : len - off;
        char *g = guarded(s + off, n);
        size_t pos = 0;

        while (pos < n) {
            bool done;
            ssize_t used = resp_feed(&r, g + pos, n - pos, m, &done);

            if (used < 0) {
                f.error = true;
                break;
            }
            assert_true(used > 0 || done);
            pos += (size_t)used;
            if (done && f.responses < 8) {
                f.status[f.responses] = r.status;
                f.keep[f.responses++] = r.keep_alive;
            }
        }
        unguard(g, n);
        off += n;
    }
    if (eof && !f.error && resp_eof(&r) && f.responses < 8) {
        f.status[f.responses] = r.status;
        f.keep[f.responses++] = false;
    }
    if (!f.error && !eof && !resp_idle(&r))
        f.error = true; /* a response left unfinished counts as a failure in these tests */
    return f;
}

static const char cl_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
static const char chunked_resp[] = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-T: 1\r\n\r\n";

static void test_resp_content_length(void **state)
{
    (void)state;
    for (size_t step = 0; step <= 7; step++) {
        struct fed f = feed(cl_resp, step, H1_M_GET, false);

        assert_false(f.error);
        assert_int_equal(f.responses, 1);
        assert_int_equal(f.status[0], 200);
        assert_true(f.keep[0]);
    }
}

static void test_resp_chunked(void **state)
{
    (void)state;
    for (size_t step = 0; step <= 5; step++) {
        struct fed f = feed(chunked_resp, step, H1_M_GET, false);

        assert_false(f.error);
        assert_int_equal(f.responses, 1);
        assert_int_equal(f.status[0], 201);
    }
}

static void test_resp_pipelined(void **state)
{
    char buf[1024];

    (void)state;
    snprintf(buf, sizeof(buf), "%s%s%s", cl_resp, chunked_resp,
             "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    for (size_t step = 0; step <= 3; step++) {
        struct fed f = feed(buf, step, H1_M_GET, false);

        assert_false(f.error);
        assert_int_equal(f.responses, 3);
        assert_int_equal(f.status[0], 200);
        assert_int_equal(f.status[1], 201);
        assert_int_equal(f.status[2], 404);
        assert_false(f.keep[2]);
    }
}

static void test_resp_interim_head_close(void **state)
{
    struct fed f;

    (void)state;
    /* 100 Continue is skipped, the final response counts */
    f = feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1,
             H1_M_POST, false);
    assert_false(f.error);
    assert_int_equal(f.responses, 1);
    assert_int_equal(f.status[0], 200);
    /* HEAD: Content-Length describes a body that is not sent */
    f = feed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 1,
             H1_M_HEAD, false);
    assert_int_equal(f.responses, 2);
    assert_int_equal(f.status[1], 204);
    /* no length: the body runs until the close */
    f = feed("HTTP/1.1 200 OK\r\n\r\nbody bytes", 1, H1_M_GET, true);
    assert_false(f.error);
    assert_int_equal(f.responses, 1);
    assert_false(f.keep[0]);
    /* HTTP/1.0 without keep-alive */
    f = feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0, H1_M_GET, false);
    assert_int_equal(f.responses, 1);
    assert_false(f.keep[0]);
}

static void test_resp_malformed(void **state)
{
    static const char *const bad[] = {
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    static char big[HEAD_MAX + 64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(feed(bad[i], 0, H1_M_GET, false).error);
        assert_true(feed(bad[i], 1, H1_M_GET, false).error);
    }
    /* a head larger than HEAD_MAX */
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX: ");
    memset(big + strlen(big), 'a', HEAD_MAX);
    assert_true(feed(big, 0, H1_M_GET, false).error);
    assert_true(feed(big, 1000, H1_M_GET, false).error);
}

/* ---------------------------------------------------------------- connection accounting */

struct rig {
    struct opts o;
    struct shared sh;
    struct worker *w;
    struct conn *c;
    char hbuf[HEAD_MAX];
};

static void rig_up(struct rig *r, const char *const *args)
{
    struct sockaddr_in *a = (struct sockaddr_in *)&r->sh.addr;

    memset(r, 0, sizeof(*r));
    assert_int_equal(parse(&r->o, args), -1);
    r->sh.o = &r->o;
    a->sin_family = AF_INET;
    a->sin_port = htons(1);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->sh.addrlen = sizeof(*a);
    assert_int_equal(make_request(&r->sh, &r->o), 0);
    r->w = calloc(1, sizeof(*r->w));
    r->c = calloc(1, sizeof(*r->c));
    assert_true(r->w && r->c);
    assert_int_equal(io_uring_queue_init(64, &r->w->ring, 0), 0);
    r->w->sh = &r->sh;
    r->w->o = &r->o;
    r->w->conns = r->c;
    r->w->nconns = 1;
    r->w->now = 5000000;
    hist_init(&r->w->lat);
    r->c->rs.hbuf = r->hbuf;
    r->c->open = r->c->connected = r->c->recv_armed = true;
    r->c->inflight = r->o.pipeline;
    r->c->sent_ns = r->w->now - 1500000; /* 1.5 ms ago */
}

static void rig_down(struct rig *r)
{
    io_uring_queue_exit(&r->w->ring);
    free(r->sh.req);
    free(r->sh.payload);
    free(r->sh.frames);
    free(r->w->wsreq);
    free(r->w);
    free(r->c);
}

/* Delivers len bytes to the connection in pieces of `step` bytes, as receives would. */
static void deliver_n(struct rig *r, const char *s, size_t len, size_t step)
{
    size_t off = 0;

    while (off < len) {
        size_t n = step && len - off > step ? step : len - off;
        char *g = guarded(s + off, n);

        r->w->st.bytes += n;
        conn_input(r->w, r->c, g, n);
        unguard(g, n);
        off += n;
    }
}

static void deliver(struct rig *r, const char *s, size_t step)
{
    deliver_n(r, s, strlen(s), step);
}

static void test_conn_keepalive_pipeline(void **state)
{
    char buf[512];

    (void)state;
    for (size_t step = 0; step <= 1; step++) {
        struct rig r;

        rig_up(&r,
               (const char *const[]){"--pipeline", "2", "-c", "1", "-t", "1", "http://h/", NULL});
        snprintf(buf, sizeof(buf), "%s%s", cl_resp,
                 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbad");
        deliver(&r, buf, step);
        assert_int_equal(r.w->st.responses, 2);
        assert_int_equal(r.w->st.cls[2], 1);
        assert_int_equal(r.w->st.cls[5], 1);
        assert_int_equal(r.w->st.err[ERR_READ], 0);
        assert_true(r.w->st.bytes == strlen(buf));
        assert_int_equal(hist_count(&r.w->lat), 2);
        assert_true(hist_percentile(&r.w->lat, 50) >= 1485 &&
                    hist_percentile(&r.w->lat, 50) <= 1515);
        /* both answered: the next batch of two went out on the same connection */
        assert_int_equal(io_uring_sq_ready(&r.w->ring), 1);
        assert_int_equal(r.c->inflight, 2);
        assert_int_equal(r.c->gen, 0);
        rig_down(&r);
    }
}

static void test_conn_close_reconnects(void **state)
{
    (void)state;
    for (size_t step = 0; step <= 1; step++) {
        struct rig r;

        rig_up(&r, (const char *const[]){"-c", "1", "-t", "1", "http://h/", NULL});
        deliver(&r, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", step);
        assert_int_equal(r.w->st.responses, 1);
        /* cancel, socket, connect, send: a fresh connection with the next request */
        assert_int_equal(io_uring_sq_ready(&r.w->ring), 4);
        assert_int_equal(r.c->gen, 1);
        assert_true(r.c->open && !r.c->connected);
        assert_int_equal(r.c->inflight, 1);
        assert_int_equal(r.w->st.err[ERR_READ], 0);
        rig_down(&r);
    }
}

static void test_conn_count_limit(void **state)
{
    struct rig r;

    (void)state;
    rig_up(&r, (const char *const[]){"-n", "1", "-c", "1", "-t", "1", "http://h/", NULL});
    r.w->quota = 1;
    r.w->issued = 1;
    deliver(&r, cl_resp, 1);
    assert_int_equal(r.w->st.responses, 1);
    assert_true(r.w->finished == 1 && run_done(r.w));
    assert_int_equal(io_uring_sq_ready(&r.w->ring), 0); /* nothing more was sent */
    rig_down(&r);
}

static void test_conn_garbage_and_eof(void **state)
{
    struct rig r;

    (void)state;
    rig_up(&r, (const char *const[]){"-c", "1", "-t", "1", "http://h/", NULL});
    deliver(&r, "garbage\r\n\r\n", 0);
    assert_int_equal(r.w->st.err[ERR_READ], 1);
    assert_int_equal(r.w->st.responses, 0);
    assert_int_equal(r.c->gen, 1); /* reopened */
    rig_down(&r);

    /* the server closes in the middle of a response: a read error */
    rig_up(&r, (const char *const[]){"-c", "1", "-t", "1", "http://h/", NULL});
    deliver(&r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1);
    on_eof(r.w, r.c);
    assert_int_equal(r.w->st.err[ERR_READ], 1);
    assert_int_equal(r.w->st.responses, 0);
    rig_down(&r);

    /* a body delimited by the close is a complete response */
    rig_up(&r, (const char *const[]){"-c", "1", "-t", "1", "http://h/", NULL});
    deliver(&r, "HTTP/1.1 200 OK\r\n\r\nuntil close", 1);
    on_eof(r.w, r.c);
    assert_int_equal(r.w->st.err[ERR_READ], 0);
    assert_int_equal(r.w->st.responses, 1);
    rig_down(&r);

    /* bytes nobody asked for */
    rig_up(&r, (const char *const[]){"-c", "1", "-t", "1", "http://h/", NULL});
    r.c->inflight = 0;
    deliver(&r, cl_resp, 0);
    assert_int_equal(r.w->st.err[ERR_READ], 1);
    rig_down(&r);
}

static void test_rate_schedule(void **state)
{
    struct rig r;

    (void)state;
    /* -R 1000 over 1 connection: one request every ms; latency from the intended time */
    rig_up(&r, (const char *const[]){"-R", "1000", "-c", "1", "-t", "1", "http://h/", NULL});
    r.w->heap = calloc(1, sizeof(*r.w->heap));
    r.w->interval_ns = 1000000;
    r.c->due_ns = r.c->sent_ns = r.w->now - 3000000; /* intended 3 ms ago */
    deliver(&r, cl_resp, 0);
    assert_true(hist_percentile(&r.w->lat, 50) >= 2970); /* not the 0 us since the reap */
    /* the next intended time (2 ms ago) has passed: sent at once */
    assert_int_equal(io_uring_sq_ready(&r.w->ring), 1);
    assert_true(r.c->sent_ns == r.w->now - 2000000);
    /* answered now: the following one is due in the future and waits in the heap */
    r.c->due_ns = r.w->now + 500000 - 1000000;
    deliver(&r, cl_resp, 0);
    assert_int_equal(r.w->heap_len, 1);
    assert_true(r.w->heap[0] == r.c && r.c->due_ns == r.w->now + 500000);
    free(r.w->heap);
    rig_down(&r);
}

/* ---------------------------------------------------------------- WebSocket (--ws) */

static const uint64_t ws_lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 200000};

static void test_ws_frame_head(void **state)
{
    static const unsigned char key[4] = {1, 2, 3, 4};
    unsigned char h[14];

    (void)state;
    /* the shortest form: 7 bits up to 125, 16 bits up to 65535, 64 bits beyond */
    assert_int_equal(ws_frame_head(h, 2, 125, NULL), 2);
    assert_true(h[0] == 0x82 && h[1] == 125);
    assert_int_equal(ws_frame_head(h, 2, 126, NULL), 4);
    assert_true(h[1] == 126 && h[2] == 0 && h[3] == 126);
    assert_int_equal(ws_frame_head(h, 2, 65535, NULL), 4);
    assert_true(h[1] == 126 && h[2] == 0xff && h[3] == 0xff);
    assert_int_equal(ws_frame_head(h, 2, 65536, NULL), 10);
    assert_true(h[1] == 127 && h[2] == 0 && h[7] == 1 && h[8] == 0 && h[9] == 0);
    assert_int_equal(ws_frame_head(h, 9, 0, NULL), 2);
    assert_true(h[0] == 0x89 && h[1] == 0);
    /* masked: the mask bit, then the key after the length */
    assert_int_equal(ws_frame_head(h, 2, 125, key), 6);
    assert_true(h[1] == (0x80 | 125) && memcmp(h + 2, key, 4) == 0);
    assert_int_equal(ws_frame_head(h, 2, 126, key), 8);
    assert_true(h[1] == (0x80 | 126) && memcmp(h + 4, key, 4) == 0);
    assert_int_equal(ws_frame_head(h, 2, 65535, key), 8);
    assert_int_equal(ws_frame_head(h, 2, 65536, key), 14);
    assert_true(h[1] == (0x80 | 127) && memcmp(h + 10, key, 4) == 0);
}

static void test_ws_mask(void **state)
{
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    char a[11] = "Hello", b[11], c[11];

    (void)state;
    /* RFC 6455 5.7: "Hello" masked with 37 fa 21 3d */
    ws_mask(b, a, 5, key, 0);
    assert_memory_equal(b, "\x7f\x9f\x4d\x51\x58", 5);
    /* in two pieces, the key's phase carried by the offset; in place back again */
    memcpy(a, "0123456789", 10);
    ws_mask(b, a, 10, key, 0);
    ws_mask(c, a, 3, key, 0);
    ws_mask(c + 3, a + 3, 7, key, 3);
    assert_memory_equal(b, c, 10);
    ws_mask(c, c, 10, key, 0);
    assert_memory_equal(c, a, 10);
}

static void test_ws_accept_key(void **state)
{
    char out[32] = "";
    uint64_t rng = 42;

    (void)state;
    ws_base64(out, (const unsigned char *)"f", 1);
    assert_memory_equal(out, "Zg==", 4);
    ws_base64(out, (const unsigned char *)"fo", 2);
    assert_memory_equal(out, "Zm8=", 4);
    ws_base64(out, (const unsigned char *)"foobar", 6);
    assert_memory_equal(out, "Zm9vYmFy", 8);
    /* RFC 6455 1.3's example */
    assert_int_equal(ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    assert_memory_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28);
    /* fresh keys: 16 bytes of base64, never twice the same */
    memset(out, 0, sizeof(out));
    ws_new_key(&rng, out);
    assert_int_equal(strlen(out), WS_KEY_LEN);
    assert_true(out[22] == '=' && out[23] == '=');
    {
        char again[32] = "";

        ws_new_key(&rng, again);
        assert_true(memcmp(out, again, WS_KEY_LEN) != 0);
    }
}

/* An unmasked server frame: header and payload in buf (room for len + 10). Returns its length. */
static size_t server_frame(char *buf, unsigned op, bool fin, const char *payload, uint64_t len)
{
    size_t h = ws_frame_head((unsigned char *)buf, op, len, NULL);

    if (!fin)
        buf[0] = (char)(buf[0] & 0x7f);
    memcpy(buf + h, payload, (size_t)len);
    return h + (size_t)len;
}

struct wsfed {
    int messages, closes, controls;
    bool error;
    size_t used;
};

/* Feeds buf to a fresh decoder in pieces: cut at `split` (0: none), then `step` bytes each (0:
 * the rest at once), every piece a guarded copy. */
static struct wsfed ws_feed_all(struct ws_rx *x, const char *buf, size_t len, size_t split,
                                size_t step, const char *expect, uint64_t elen)
{
    struct wsfed f = {0};
    size_t off = 0;

    while (off < len && !f.error) {
        size_t n = len - off;
        char *g;

        if (split && off < split)
            n = split - off;
        else if (step && n > step)
            n = step;
        g = guarded(buf + off, n);
        for (size_t pos = 0; pos < n;) {
            int ev;
            ssize_t used = ws_feed(x, g + pos, n - pos, expect, elen, &ev);

            if (used < 0) {
                f.error = true;
                break;
            }
            assert_true(used > 0);
            pos += (size_t)used;
            f.used += (size_t)used;
            f.messages += ev == WS_EV_MESSAGE;
            f.closes += ev == WS_EV_CLOSE;
            f.controls += ev == WS_EV_CONTROL;
        }
        unguard(g, n);
        off += n;
    }
    return f;
}

static void test_ws_feed_lengths(void **state)
{
    const size_t maxlen = 200000;
    char *payload = malloc(maxlen), *buf = malloc(maxlen + 20);

    (void)state;
    assert_true(payload && buf);
    for (size_t i = 0; i < maxlen; i++)
        payload[i] = (char)(i * 7 + 3);
    for (size_t k = 0; k < sizeof(ws_lengths) / sizeof(ws_lengths[0]); k++) {
        uint64_t len = ws_lengths[k];
        size_t n = server_frame(buf, 2, true, payload, len);
        size_t head = n - (size_t)len;
        static const size_t steps[] = {0, 1, 3, 4096};

        /* whole, and cut at every byte of the header (where a split needs care) */
        for (size_t split = 0; split <= head + 1 && split < n; split++) {
            struct ws_rx x = {0};
            struct wsfed f = ws_feed_all(&x, buf, n, split, 0, payload, len);

            assert_false(f.error);
            assert_int_equal(f.messages, 1);
            assert_int_equal(f.used, n);
        }
        for (size_t s = 1; s < sizeof(steps) / sizeof(steps[0]); s++) {
            struct ws_rx x = {0};
            struct wsfed f;

            if (steps[s] == 1 && len > 65536)
                continue; /* a guarded page per byte: slow, and no different */
            f = ws_feed_all(&x, buf, n, 0, steps[s], payload, len);
            assert_false(f.error);
            assert_int_equal(f.messages, 1);
        }
        /* the message is compared: one byte off, or a length other than the one sent */
        if (len) {
            struct ws_rx x = {0};

            buf[n - 1] ^= 1;
            assert_true(ws_feed_all(&x, buf, n, 0, 0, payload, len).error);
            buf[n - 1] ^= 1;
            memset(&x, 0, sizeof(x));
            assert_true(ws_feed_all(&x, buf, n, 0, 0, payload, len - 1).error);
        }
        {
            struct ws_rx x = {0};

            assert_true(ws_feed_all(&x, buf, n, 0, 0, payload, len + 1).error); /* too short */
        }
    }
    free(payload);
    free(buf);
}

static void test_ws_feed_fragments_control(void **state)
{
    char buf[512], msg[100];
    size_t n = 0;
    struct ws_rx x = {0};
    struct wsfed f;

    (void)state;
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)i;
    /* a message in three fragments, a ping and a pong between them, then a close */
    n += server_frame(buf + n, 2, false, msg, 30);
    n += server_frame(buf + n, 9, true, "ping", 4);
    n += server_frame(buf + n, 0, false, msg + 30, 0);
    n += server_frame(buf + n, 10, true, "", 0);
    n += server_frame(buf + n, 0, true, msg + 30, 70);
    n += server_frame(buf + n, 8, true, "\x03\xe8", 2);
    for (size_t step = 0; step <= 2; step++) {
        memset(&x, 0, sizeof(x));
        f = ws_feed_all(&x, buf, n, 0, step, msg, sizeof(msg));
        assert_false(f.error);
        assert_int_equal(f.messages, 1);
        assert_int_equal(f.controls, 2);
        assert_int_equal(f.closes, 1);
        assert_int_equal(f.used, n);
    }
}

static void test_ws_feed_malformed(void **state)
{
    static const unsigned char key[4] = {9, 9, 9, 9};
    char buf[300], pl[200] = {0};
    struct ws_rx x;
    size_t n;

    (void)state;
#define WS_BAD(len)                                                                                \
    do {                                                                                           \
        memset(&x, 0, sizeof(x));                                                                  \
        assert_true(ws_feed_all(&x, buf, (len), 0, 0, pl, 10).error);                              \
        memset(&x, 0, sizeof(x));                                                                  \
        assert_true(ws_feed_all(&x, buf, (len), 0, 1, pl, 10).error);                              \
    } while (0)
    n = ws_frame_head((unsigned char *)buf, 2, 10, key) + 10; /* servers must not mask */
    WS_BAD(n);
    n = server_frame(buf, 2, true, pl, 10);
    buf[0] |= 0x40; /* RSV1 without an extension */
    WS_BAD(n);
    n = server_frame(buf, 1, true, pl, 10); /* text: the message sent was binary */
    WS_BAD(n);
    n = server_frame(buf, 3, true, pl, 10); /* a reserved opcode */
    WS_BAD(n);
    n = server_frame(buf, 11, true, pl, 0); /* a reserved control opcode */
    WS_BAD(n);
    n = server_frame(buf, 0, true, pl, 10); /* a continuation with no message begun */
    WS_BAD(n);
    n = server_frame(buf, 9, true, pl, 126); /* a control frame over 125 bytes */
    WS_BAD(n);
    n = server_frame(buf, 9, false, pl, 4); /* a fragmented control frame */
    WS_BAD(n);
    n = server_frame(buf, 2, false, pl, 4); /* a new message inside a fragmented one */
    n += server_frame(buf + n, 2, true, pl, 6);
    WS_BAD(n);
    memcpy(buf, "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x0a", 10); /* 64-bit length, top bit */
    WS_BAD(10);
    memcpy(buf, "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10); /* longer than the message */
    WS_BAD(10);
#undef WS_BAD
}

static void test_ws_options_request(void **state)
{
    struct opts o;
    struct shared sh = {.o = &o};
    char out[512];
    size_t n;

    (void)state;
    assert_int_equal(PARSE(&o, "--ws", "64", "-H", "Host: x", "http://h:81/chat"), -1);
    assert_true(o.ws && o.ws_size == 64);
    n = build_request(&o, NULL, 0, out);
    out[n] = 0;
    assert_string_equal(out, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n");
    assert_int_equal(make_request(&sh, &o), 0);
    assert_memory_equal(sh.req + sh.key_off, "AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n", 28);
    /* every pre-masked frame carries the one message under its own key */
    assert_true(sh.nframes >= 1 && sh.nframes <= 16 && sh.frame_len == 6 + 64);
    for (unsigned f = 0; f < sh.nframes; f++) {
        const unsigned char *fr = (const unsigned char *)sh.frames + f * sh.frame_len;
        char plain[64];

        assert_true(fr[0] == 0x82 && fr[1] == (0x80 | 64));
        ws_mask(plain, (const char *)fr + 6, 64, fr + 2, 0);
        assert_memory_equal(plain, sh.payload, 64);
    }
    free(sh.req);
    free(sh.payload);
    free(sh.frames);
    assert_int_equal(PARSE(&o, "--ws", "0", "http://h/"), -1);
    assert_int_equal(PARSE(&o, "--ws", "16777216", "http://h/"), -1);
    assert_int_equal(PARSE(&o, "--ws", "16777217", "http://h/"), 2);
    assert_int_equal(PARSE(&o, "--ws", "x", "http://h/"), 2);
    assert_int_equal(PARSE(&o, "--ws", "8", "--close", "http://h/"), 2);
    assert_int_equal(PARSE(&o, "--ws", "8", "--pipeline", "2", "http://h/"), 2);
    assert_int_equal(PARSE(&o, "--ws", "8", "--body", "/dev/null", "http://h/"), 2);
    assert_int_equal(PARSE(&o, "--ws", "8", "-m", "POST", "http://h/"), 2);
}

/* A --ws rig whose connection has sent its upgrade; writes the right 101 for it into out. */
static void ws_rig_up(struct rig *r, char *out, size_t cap)
{
    char acc[29] = "";

    rig_up(r, (const char *const[]){"--ws", "5", "-c", "1", "-t", "1", "http://h/", NULL});
    assert_int_equal(ws_setup(r->w, 0), 0);
    r->c->inflight = 0;
    ws_begin(r->w, r->c);
    assert_int_equal(ws_accept(r->c->rs.ws_key, WS_KEY_LEN, acc), 0);
    snprintf(out, cap,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             acc);
}

static void test_ws_conn_upgrade_and_echo(void **state)
{
    char ok[256], frames[64];
    size_t n;

    (void)state;
    for (size_t step = 0; step <= 1; step++) {
        struct rig r;

        ws_rig_up(&r, ok, sizeof(ok));
        /* the 101 and the first echo may come in one receive: the echo is of nothing sent */
        deliver(&r, ok, step);
        assert_int_equal(r.w->st.upgrades, 1);
        assert_int_equal(r.c->ws, WS_OPEN);
        assert_int_equal(r.c->inflight, 1); /* the first message went out */
        assert_int_equal(io_uring_sq_ready(&r.w->ring), 1);
        assert_int_equal(r.c->nmsg, 1);
        n = server_frame(frames, 2, true, r.sh.payload, 5);
        r.c->sent_ns = r.w->now - 700000;
        deliver_n(&r, frames, n, step);
        assert_int_equal(r.w->st.responses, 1);
        assert_int_equal(hist_count(&r.w->lat), 1);
        assert_true(hist_percentile(&r.w->lat, 50) >= 690 && hist_percentile(&r.w->lat, 50) <= 710);
        assert_int_equal(r.c->inflight, 1); /* and the next */
        assert_int_equal(r.c->nmsg, 2);
        assert_int_equal(r.w->st.cls[1], 0); /* messages have no status */
        assert_int_equal(r.w->st.err[ERR_READ] + r.w->st.err[ERR_UPGRADE], 0);
        /* a wrong echo is a read error at its first wrong byte, and the connection starts
         * over (what follows would be the old socket's, dropped by its generation) */
        memcpy(frames, "\x82\x05", 2);
        frames[2] = (char)(r.sh.payload[0] ^ 0x55); /* the payload is random: never equal */
        deliver_n(&r, frames, 3, step);
        assert_int_equal(r.w->st.err[ERR_READ], 1);
        assert_int_equal(r.c->gen, 1);
        assert_int_equal(r.c->ws, WS_HS);
        rig_down(&r);
    }
}

static void test_ws_conn_refused(void **state)
{
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", /* someone else's key */
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
        "garbage\r\n\r\n",
    };
    char ok[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rig r;

        ws_rig_up(&r, ok, sizeof(ok));
        deliver(&r, bad[i], 0);
        assert_int_equal(r.w->st.err[ERR_UPGRADE], 1);
        assert_int_equal(r.w->st.upgrades, 0);
        assert_int_equal(r.c->gen, 1); /* reopened, with a new handshake */
        assert_int_equal(r.c->ws, WS_HS);
        rig_down(&r);
    }
    {
        struct rig r;

        /* closed before answering the upgrade; then, upgraded, closed between messages */
        ws_rig_up(&r, ok, sizeof(ok));
        on_eof(r.w, r.c);
        assert_int_equal(r.w->st.err[ERR_UPGRADE], 1);
        rig_down(&r);
        ws_rig_up(&r, ok, sizeof(ok));
        r.o.count = 1; /* so that nothing more is sent after the 101 */
        r.w->quota = 1;
        r.w->issued = 1;
        deliver(&r, ok, 0);
        assert_int_equal(r.c->inflight, 0);
        on_eof(r.w, r.c);
        assert_int_equal(r.w->st.err[ERR_READ] + r.w->st.err[ERR_UPGRADE], 0);
        rig_down(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_options_defaults),
        cmocka_unit_test(test_options_all),
        cmocka_unit_test(test_options_bad),
        cmocka_unit_test(test_url_basic),
        cmocka_unit_test(test_url_ipv6),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_resp_content_length),
        cmocka_unit_test(test_resp_chunked),
        cmocka_unit_test(test_resp_pipelined),
        cmocka_unit_test(test_resp_interim_head_close),
        cmocka_unit_test(test_resp_malformed),
        cmocka_unit_test(test_conn_keepalive_pipeline),
        cmocka_unit_test(test_conn_close_reconnects),
        cmocka_unit_test(test_conn_count_limit),
        cmocka_unit_test(test_conn_garbage_and_eof),
        cmocka_unit_test(test_rate_schedule),
        cmocka_unit_test(test_ws_frame_head),
        cmocka_unit_test(test_ws_mask),
        cmocka_unit_test(test_ws_accept_key),
        cmocka_unit_test(test_ws_feed_lengths),
        cmocka_unit_test(test_ws_feed_fragments_control),
        cmocka_unit_test(test_ws_feed_malformed),
        cmocka_unit_test(test_ws_options_request),
        cmocka_unit_test(test_ws_conn_upgrade_and_echo),
        cmocka_unit_test(test_ws_conn_refused),
    };

    (void)run; /* the tool's driver is exercised by the integration tests */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
