/* test_accesslog.c: the access log. logfmt.c's compiler (named formats, templates, every
 * error), every variable, the escaping of hostile values in text and JSON (checked with a
 * small JSON parser here), and accesslog.c's worker side on a real io_uring ring: lines go
 * whole into the file, a record's line goes to its domain's log, and with a write stuck in
 * flight (a pipe nobody reads) new lines are dropped and counted, never torn.
 *
 * accesslog.c and logfmt.c are #included for their static functions; the rest of the library
 * is linked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "../../engine/accesslog.c"
#include "../../engine/logfmt.c"

/* ---- helpers --------------------------------------------------------------------------- */

static struct logfmt *compile_ok(const char *spec)
{
    struct logfmt *f = NULL;
    char err[256];

    assert_int_equal(logfmt_compile(spec, &f, err, sizeof(err)), 0);
    assert_non_null(f);
    return f;
}

static void compile_bad(const char *spec, const char *want)
{
    struct logfmt *f = (struct logfmt *)1;
    char err[256];

    assert_int_equal(logfmt_compile(spec, &f, err, sizeof(err)), -EINVAL);
    assert_null(f);
    assert_string_equal(err, want);
}

/* A line with every value set; hv holds the values of f's headers by name. */
static struct lf_span hv[LOGFMT_MAX_HEADERS];
static const struct lf_try two_tries[2] = {
    {"10.0.0.1:80", 502, -1, 1500},
    {"10.0.0.2:80", 200, 1000, 12345},
};

static struct lf_line full_line(const struct logfmt *f, const char *ua, const char *referer)
{
    for (uint32_t i = 0; i < logfmt_n_headers(f); i++) {
        const char *n = logfmt_header_name(f, i), *v = NULL;
        if (!strcmp(n, "user_agent"))
            v = ua;
        else if (!strcmp(n, "referer"))
            v = referer;
        else if (!strcmp(n, "x_forwarded_for"))
            v = "1.2.3.4";
        hv[i] = (struct lf_span){v, v ? (uint32_t)strlen(v) : 0};
    }
    return (struct lf_line){
        .remote_addr = "192.0.2.7",
        .time_local = "10/Oct/2000:13:55:36 +0000",
        .time_iso8601 = "2000-10-10T13:55:36+00:00",
        .method = {"GET", 3},
        .path = {"/a?b=c", 6},
        .host = {"Example.COM:8080", 16},
        .minor = 1,
        .hdrs = hv,
        .status = 200,
        .body_bytes = 1234,
        .request_us = 12345,
        .tries = two_tries,
        .n_tries = 2,
        .cache_status = "MISS",
        .ssl_protocol = "TLSv1.3",
        .request_id = "0123456789abcdef0123456789abcdef",
    };
}

static char out[8192];

static const char *line_of(const struct logfmt *f, const struct lf_line *l)
{
    size_t n = logfmt_write(f, l, out, sizeof(out) - 1);

    assert_true(n > 0);
    assert_int_equal(out[n - 1], '\n');
    out[n] = 0;
    return out;
}

/* ---- compiling --------------------------------------------------------------------------- */

static void test_compile_named(void **state)
{
    struct logfmt *f = compile_ok("combined");

    (void)state;
    assert_int_equal(logfmt_n_headers(f), 2);
    assert_string_equal(logfmt_header_name(f, 0), "referer");
    assert_string_equal(logfmt_header_name(f, 1), "user_agent");
    assert_false(logfmt_uses_request_id(f));
    logfmt_free(f);
    f = compile_ok(NULL); /* the default is combined */
    logfmt_free(f);
    f = compile_ok("json");
    assert_true(logfmt_uses_request_id(f));
    logfmt_free(f);
}

static void test_compile_errors(void **state)
{
    char big[64 * 20 + 1] = "";

    (void)state;
    compile_bad("$remote_addr $foo", "unknown variable $foo");
    compile_bad("${nope}", "unknown variable $nope");
    compile_bad("$http_", "unknown variable $http_");
    compile_bad("cost: $", "'$' without a variable name at offset 6");
    compile_bad("a $-b", "'$' without a variable name at offset 2");
    compile_bad("${status", "'$' without a variable name at offset 0 (want ${name})");
    compile_bad("${}", "'$' without a variable name at offset 0 (want ${name})");
    compile_bad("$status\n$status", "a control character at offset 7 (only tabs may be)");
    compile_bad("a\rb", "a control character at offset 1 (only tabs may be)");
    compile_bad("", "an empty format");
    for (int i = 0; i < 65; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "$http_h%d", i);
    compile_bad(big, "more than 64 different $http_ variables");
    logfmt_free(compile_ok("$status\t$request_time")); /* tabs are fine */
}

static void test_compile_braces_and_case(void **state)
{
    struct logfmt *f =
        compile_ok("${status}x$STATUS ${http_X_Forwarded_For}/$http_x_forwarded_for");
    struct lf_line l = full_line(f, NULL, NULL);

    (void)state;
    assert_int_equal(logfmt_n_headers(f), 1); /* one name, however spelled */
    assert_true(logfmt_header_is(f, 0, "X-Forwarded-For", 15));
    assert_true(logfmt_header_is(f, 0, "x_forwarded_FOR", 15));
    assert_false(logfmt_header_is(f, 0, "X-Forwarded-Fo", 14));
    assert_false(logfmt_header_is(f, 0, "X-Forwarded-Form", 16));
    assert_string_equal(line_of(f, &l), "200x200 1.2.3.4/1.2.3.4\n");
    logfmt_free(f);
}

/* ---- every variable ---------------------------------------------------------------------- */

static void test_every_variable(void **state)
{
    struct logfmt *f = compile_ok(
        "$remote_addr|$remote_user|$time_local|$time_iso8601|$request|$status|$body_bytes_sent|"
        "$request_time|$http_referer|$http_user_agent|$http_x_forwarded_for|$http_missing|"
        "$host|$upstream_addr|$upstream_status|$upstream_connect_time|$upstream_response_time|"
        "$upstream_cache_status|$ssl_protocol|$request_id");
    struct lf_line l = full_line(f, "curl/8", "http://r/");

    (void)state;
    assert_string_equal(line_of(f, &l),
                        "192.0.2.7|-|10/Oct/2000:13:55:36 +0000|2000-10-10T13:55:36+00:00|"
                        "GET /a?b=c HTTP/1.1|200|1234|0.012|http://r/|curl/8|1.2.3.4|-|"
                        "example.com|10.0.0.1:80, 10.0.0.2:80|502, 200|-, 0.001|0.001, 0.012|"
                        "MISS|TLSv1.3|0123456789abcdef0123456789abcdef\n");
    /* missing values are "-", as nginx prints them; a present empty one is empty */
    l = (struct lf_line){.hdrs = hv, .status = 400};
    memset(hv, 0, sizeof(hv));
    hv[1] = (struct lf_span){"", 0};
    assert_string_equal(line_of(f, &l), "-|-|-|-|-|400|0|0.000|-||-|-|-|-|-|-|-|-|-|-\n");
    logfmt_free(f);
}

static void test_combined_line(void **state)
{
    struct logfmt *f = compile_ok("combined");
    struct lf_line l = full_line(f, "Mozilla/5.0", NULL);

    (void)state;
    l.minor = 0;
    assert_string_equal(line_of(f, &l), "192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] \"GET /a?b=c "
                                        "HTTP/1.0\" 200 1234 \"-\" \"Mozilla/5.0\"\n");
    logfmt_free(f);
}

static void test_host_forms(void **state)
{
    struct logfmt *f = compile_ok("$host");
    struct lf_line l = {.host = {"[::1]:8443", 10}};

    (void)state;
    assert_string_equal(line_of(f, &l), "[::1]\n");
    l.host = (struct lf_span){"[::1]", 5};
    assert_string_equal(line_of(f, &l), "[::1]\n");
    l.host = (struct lf_span){"A.B", 3};
    assert_string_equal(line_of(f, &l), "a.b\n");
    logfmt_free(f);
}

/* ---- escaping ---------------------------------------------------------------------------- */

static const char nasty[] = "a\"b\\c\r\nd\x01\x7f\xff\xc3\xa9\x1b[31m";

static void test_text_escaping(void **state)
{
    struct logfmt *f = compile_ok("combined");
    struct lf_line l = full_line(f, nasty, "\"-\" 200 \"evil");
    const char *s;

    (void)state;
    s = line_of(f, &l);
    assert_non_null(strstr(s,
                           "\"\\x22-\\x22 200 \\x22evil\" \"a\\x22b\\x5cc\\x0d\\x0ad\\x01\\x7f\\xff"
                           "\\xc3\\xa9\\x1b[31m\"\n"));
    for (const char *p = s; *p; p++) /* one line, nothing but printable ASCII */
        assert_true(p[1] ? (*p >= 0x20 && *p < 0x7f) : *p == '\n');
    logfmt_free(f);
}

/* A JSON value parser just strict enough to reject what a broken escaper would write. */
static const char *json_value(const char *p);

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            return NULL;
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 5;
                continue;
            }
            if (!*p || !strchr("\"\\/bfnrt", *p))
                return NULL;
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_len((const unsigned char *)p, strlen(p));
            if (!k)
                return NULL;
            p += k;
            continue;
        }
        p++;
    }
    return p + 1;
}

static const char *json_value(const char *p)
{
    if (*p == '"')
        return json_string(p);
    if (!strncmp(p, "null", 4))
        return p + 4;
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        p++;
        while ((*p >= '0' && *p <= '9') || *p == '.')
            p++;
        return p;
    }
    return NULL;
}

/* One object of "key": value pairs, then the newline; returns the number of keys. */
static int json_object(const char *p)
{
    int n = 0;

    if (*p++ != '{')
        return -1;
    while (*p != '}') {
        if (n && *p++ != ',')
            return -1;
        if (!(p = json_string(p)) || *p++ != ':' || !(p = json_value(p)))
            return -1;
        n++;
    }
    return p[1] == '\n' && !p[2] ? n : -1;
}

static void test_json_escaping(void **state)
{
    struct logfmt *f = compile_ok("json");
    struct lf_line l =
        full_line(f, nasty, "\xe0\x80\xaf\xed\xa0\x80\xf4\x90\x80\x80 ok \xf0\x9f\x98\x80");
    const char *s;

    (void)state;
    s = line_of(f, &l);
    assert_int_equal(json_object(s), 18);
    assert_non_null(strstr(s,
                           "\"http_user_agent\":\"a\\\"b\\\\c\\r\\nd\\u0001\\u007f\\u00ff\xc3\xa9"
                           "\\u001b[31m\""));
    /* overlong, surrogate and past-U+10FFFF forms are bytes, not characters; valid UTF-8
     * (U+1F600) passes through */
    assert_non_null(strstr(s, "\"http_referer\":\"\\u00e0\\u0080\\u00af\\u00ed\\u00a0\\u0080\\u00f4"
                              "\\u0090\\u0080\\u0080 ok \xf0\x9f\x98\x80\""));
    assert_non_null(strstr(s, "\"status\":200,\"body_bytes_sent\":1234,\"request_time\":0.012,"));
    assert_non_null(strstr(s, "\"upstream_status\":\"502, 200\""));
    l = (struct lf_line){.hdrs = hv, .status = 502};
    memset(hv, 0, sizeof(hv));
    s = line_of(f, &l);
    assert_int_equal(json_object(s), 18);
    assert_non_null(strstr(s, "\"remote_addr\":null,\"request\":null,\"status\":502"));
    logfmt_free(f);
}

static void test_line_must_fit(void **state)
{
    struct logfmt *f = compile_ok("combined");
    struct lf_line l = full_line(f, "ua", NULL);
    size_t n = logfmt_write(f, &l, out, sizeof(out));

    (void)state;
    for (size_t cap = 0; cap < n; cap++)
        assert_int_equal(logfmt_write(f, &l, out, cap), 0);
    assert_int_equal(logfmt_write(f, &l, out, n), n);
    logfmt_free(f);
}

/* ---- the worker's side --------------------------------------------------------------------- */

static struct wmetrics wm;
static struct worker wk;

static struct snapshot wsnap; /* what the worker serves on: the server's settings */

static void worker_up(struct rp_server *s)
{
    memset(&wk, 0, sizeof(wk));
    memset(&wm, 0, sizeof(wm));
    wk.s = s;
    wk.m = &wm;
    wsnap.alog_global = s->alog ? s->alog->global : NULL;
    wsnap.request_id = s->alog && s->alog->request_id;
    wk.snap = &wsnap;
    assert_int_equal(io_uring_queue_init(64, &wk.ring, 0), 0);
    assert_int_equal(alog_init(&wk), 0);
    assert_non_null(wk.alog);
}

static void worker_down(void)
{
    alog_fini(&wk);
    io_uring_queue_exit(&wk.ring);
}

/* Submits, then runs the completions there are (waiting for one when `wait`). */
static int reap(bool wait)
{
    struct io_uring_cqe *cqe;
    int n = 0;

    io_uring_submit(&wk.ring);
    while (wait ? !io_uring_wait_cqe(&wk.ring, &cqe) : !io_uring_peek_cqe(&wk.ring, &cqe)) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        struct file_op *op = (struct file_op *)(uintptr_t)(ud & ~OP_MASK);
        io_uring_cqe_seen(&wk.ring, cqe);
        assert_int_equal(ud & OP_MASK, OP_FILE);
        wk.ops--;
        op->done(&wk, op, res);
        n++;
        wait = false;
    }
    return n;
}

static char tmpdir[] = "/tmp/rp-alog-XXXXXX";

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 4 << 20);

    assert_non_null(f);
    *len = fread(buf, 1, (4 << 20) - 1, f);
    fclose(f);
    return buf;
}

static const struct lf_line *numbered(uint32_t i, struct logfmt *f)
{
    static struct lf_line l;
    static char path[64];

    (void)f;
    snprintf(path, sizeof(path), "/n/%06u", i);
    l = (struct lf_line){
        .method = {"GET", 3}, .path = {path, (uint32_t)strlen(path)}, .minor = 1, .status = 200};
    return &l;
}

/* A write that does not complete (a pipe nobody reads): the next buffer fills, then lines
 * are dropped and counted; when the pipe drains, every line that was kept arrives whole. */
static void test_stuck_write_drops_whole_lines(void **state)
{
    rp_server *s = rp_server_new(NULL);
    struct alog log = {0};
    struct alog_file *f;
    int p[2];
    const uint32_t N = 6000; /* 162 KiB of lines: more than two buffers hold */
    char err[256], *got = calloc(1, 1 << 20);
    size_t len = 0;
    uint32_t n = 0;

    (void)state;
    assert_non_null(s);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    snprintf(err, sizeof(err), "/proc/self/fd/%d", p[1]);
    assert_non_null(f = alog_open(s, err, err, sizeof(err)));
    close(p[1]); /* the log has its own fd for it */
    log.file = f;
    log.fmt = compile_ok("$request $status");
    worker_up(s);
    for (uint32_t i = 0; i < N; i++) {
        put_line(&wk, &log, numbered(i, log.fmt));
        io_uring_submit(&wk.ring);
    }
    assert_true(wm.alog_dropped > 0); /* both buffers full while the write was stuck */
    assert_true(wm.alog_dropped < N);
    /* read the pipe while the completions come in, and flush what is left */
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    for (int spins = 0; spins < 2000; spins++) {
        ssize_t k = read(p[0], got + len, (1 << 20) - 1 - len);
        if (k > 0)
            len += (size_t)k;
        reap(false);
        wk.now_ms += ALOG_FLUSH_MS;
        alog_tick(&wk);
        if (wm.alog_lines + wm.alog_dropped == N && !wk.alog->bufs[f->id]->busy && k <= 0)
            break;
        usleep(1000);
    }
    assert_int_equal(wm.alog_lines + wm.alog_dropped, N);
    assert_int_equal(wm.alog_errors, 0);
    /* every line whole and in order, as many as were counted written */
    for (char *q = got, *e; (e = strchr(q, '\n')); q = e + 1, n++) {
        unsigned v;
        assert_int_equal(sscanf(q, "GET /n/%06u HTTP/1.1 200", &v), 1);
        assert_int_equal(e - q, (long)strlen("GET /n/000000 HTTP/1.1 200"));
    }
    assert_int_equal(n, wm.alog_lines);
    assert_int_equal(got[len ? len - 1 : 0], len ? '\n' : 0);
    worker_down();
    logfmt_free(log.fmt);
    alog_file_put(s, f);
    close(p[0]);
    free(got);
    rp_server_free(s);
}

/* A write that fails (/dev/full) drops its lines, counts the error, and the next goes on. */
static void test_failed_write_counted(void **state)
{
    rp_server *s = rp_server_new(NULL);
    struct alog log = {0};
    char err[256];

    (void)state;
    assert_non_null(log.file = alog_open(s, "/dev/full", err, sizeof(err)));
    log.fmt = compile_ok("$status");
    worker_up(s);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10; i++)
            put_line(&wk, &log, numbered((uint32_t)i, log.fmt));
        wk.now_ms += ALOG_FLUSH_MS;
        alog_tick(&wk);
        assert_int_equal(reap(true), 1);
    }
    assert_int_equal(wm.alog_errors, 3);
    assert_int_equal(wm.alog_dropped, 30);
    assert_int_equal(wm.alog_lines, 0);
    worker_down();
    logfmt_free(log.fmt);
    rp_server_free(s);
}

/* Through the hooks: a routed request's record goes to its domain's log, an answer with no
 * exchange to the server's; reopening moves both files' next lines to new files. */
static void test_records_and_reopen(void **state)
{
    char glob[64], dom[64], moved[80];
    rp_backend_config be = {.addr = "http://127.0.0.1:9"};
    rp_server_config sc = {.access_log = {.path = glob}};
    rp_domain_config dc = {.domain = "d.test",
                           .backends = &be,
                           .n_backends = 1,
                           .access_log = {.path = dom,
                                          .format = "$host $status $body_bytes_sent "
                                                    "$request_id $http_x_request_id"},
                           .request_id = 1};
    const char head[] = "GET /x HTTP/1.1\r\nHost: D.test\r\nX-Request-Id: abc.DEF-1_2\r\n\r\n";
    struct h1_header hdrs[8];
    struct h1_request r = {.headers = hdrs, .headers_cap = 8};
    struct h1_limits lim = {16384, 100, 8192};
    struct exchange ex = {0};
    struct conn c = {0};
    int status;
    rp_server *s;
    char *text;
    size_t len;

    (void)state;
    snprintf(glob, sizeof(glob), "%s/global.log", tmpdir);
    snprintf(dom, sizeof(dom), "%s/d.log", tmpdir);
    assert_non_null(s = rp_server_new(&sc));
    assert_int_equal(rp_add_proxy_domain(s, &dc), 0);
    assert_true(h1_parse_request(head, sizeof(head) - 1, &r, &lim, &status) > 0);
    worker_up(s);
    c.w = &wk;
    c.peer.sin6_family = AF_INET;
    ex.state = EX_UPSTREAM;
    ex.t = route_target(&s->rt, 0);
    c.ex = &ex;
    alog_begin(&c, &r);
    assert_non_null(ex.log);
    assert_string_equal(alog_request_id(&ex), "abc.DEF-1_2"); /* the client's, kept */
    alog_status(&ex, 201);
    alog_body(&ex, 7);
    alog_end(&c);
    assert_null(ex.log);
    /* no exchange: the server's log, the request the worker is handling */
    c.ex = &wk.no_ex;
    alog_set_request(&wk, &r);
    alog_answer(&c, 405, 3);
    alog_set_request(&wk, NULL);
    alog_answer(&c, 400, 0); /* a head that did not parse */
    /* logrotate: rename both, reopen, and the next lines land in new files */
    wk.now_ms += ALOG_FLUSH_MS;
    alog_tick(&wk);
    while (wk.ops)
        reap(true);
    snprintf(moved, sizeof(moved), "%s.1", glob);
    assert_int_equal(rename(glob, moved), 0);
    rp_server_reopen_logs(s);
    alog_tick(&wk);
    assert_int_equal(wk.alog->seen, 1);
    assert_int_equal(s->alog->n_retired, 0); /* the only worker moved on: old fds closed */
    alog_answer(&c, 408, 0);
    worker_down(); /* written at exit */

    text = read_file(dom, &len);
    assert_string_equal(text, "d.test 201 7 abc.DEF-1_2 abc.DEF-1_2\n");
    free(text);
    text = read_file(moved, &len);
    assert_non_null(strstr(text, "\"GET /x HTTP/1.1\" 405 3 \"-\" \"-\"\n"));
    assert_non_null(strstr(text, "\"-\" 400 0 \"-\" \"-\"\n"));
    assert_null(strstr(text, " 408 "));
    free(text);
    text = read_file(glob, &len);
    assert_non_null(strstr(text, "\"-\" 408 0 \"-\" \"-\"\n"));
    assert_int_equal(len, strlen(text));
    free(text);
    assert_int_equal(wm.alog_lines, 4);
    rp_server_free(s);
}

static void test_made_ids_unique(void **state)
{
    rp_server *s = rp_server_new(&(rp_server_config){.request_id = true});
    char a[33], b[33];

    (void)state;
    worker_up(s);
    make_id(&wk, a);
    make_id(&wk, b);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    assert_false(id_ok("", 0));
    assert_false(id_ok("a b", 3));
    assert_false(id_ok("a\r\nX: y", 7));
    assert_true(id_ok("A-z_0.9", 7));
    worker_down();
    rp_server_free(s);
}

static void test_open_errors(void **state)
{
    rp_server *s = rp_server_new(NULL);
    char err[256];
    struct alog_file *f, *g;

    (void)state;
    assert_null(alog_open(s, "/nonexistent-dir/x.log", err, sizeof(err)));
    assert_string_equal(err, "access_log path \"/nonexistent-dir/x.log\": cannot open: No such "
                             "file or directory");
    assert_null(rp_server_new(&(rp_server_config){.access_log = {.path = "/nonexistent-dir/x"}}));
    assert_null(
        rp_server_new(&(rp_server_config){.access_log = {.path = "/dev/null", .format = "$nope"}}));
    f = alog_open(s, "/dev/null", err, sizeof(err));
    g = alog_open(s, "/dev/null", err, sizeof(err)); /* one file per path */
    assert_ptr_equal(f, g);
    assert_int_equal(f->refs, 2);
    alog_file_put(s, f);
    alog_file_put(s, g);
    rp_server_free(s);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_named),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_compile_braces_and_case),
        cmocka_unit_test(test_every_variable),
        cmocka_unit_test(test_combined_line),
        cmocka_unit_test(test_host_forms),
        cmocka_unit_test(test_text_escaping),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_line_must_fit),
        cmocka_unit_test(test_stuck_write_drops_whole_lines),
        cmocka_unit_test(test_failed_write_counted),
        cmocka_unit_test(test_records_and_reopen),
        cmocka_unit_test(test_made_ids_unique),
        cmocka_unit_test(test_open_errors),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
