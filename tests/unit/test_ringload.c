/* test_ringload.c: unit tests of ringload's own logic (tools/ringload.c, included with its main()
 * left out): option and duration parsing, URL parsing, the request it builds, and response
 * accounting, feeding canned responses whole and one byte at a time through the per-connection
 * state machine. Parser inputs sit right before a PROT_NONE page, so an over-read crashes.
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
    free(r->w);
    free(r->c);
}

/* Delivers s to the connection in pieces of `step` bytes, as receives would. */
static void deliver(struct rig *r, const char *s, size_t step)
{
    size_t len = strlen(s), off = 0;

    while (off < len) {
        size_t n = step && len - off > step ? step : len - off;
        char *g = guarded(s + off, n);

        r->w->st.bytes += n;
        conn_input(r->w, r->c, g, n);
        unguard(g, n);
        off += n;
    }
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
    };

    (void)run; /* the tool's driver is exercised by the integration tests */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
