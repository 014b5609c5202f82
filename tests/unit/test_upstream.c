/* test_upstream.c: upstream.c reading a response for its user, with the ring stubbed out
 * (as in test_pool.c): bytes are fed with up_on_data, closes with up_on_eof, and a test user
 * records what its struct up_ops is told. Heads (interim ones too), bodies framed by a length,
 * chunked (in each decode mode) or the close, whether the connection may be reused, failures,
 * tunnels after a 101, up_skip_body, and users that close `up`, or pool it and take it back,
 * inside a callback. Killed socks are freed at the end of the "loop pass" (after each feed),
 * as worker.c does, so ASan sees any use of one after that. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "../../engine/upstream.c"

static struct rp_server srv;
static struct worker w;
static struct timer_wheel tw;
static struct backend be = {.addr = "http://127.0.0.1:1", .index = 0};
static struct target tgt = {.idle_timeout_ms = 1000,
                            .max_idle = 4,
                            .connect_timeout_ms = 500,
                            .read_timeout_ms = 500,
                            .write_timeout_ms = 500};

/* ---- stubs for what upstream.c calls ---- */
#include "stub_sock.h"

/* As worker.c: dead at once, freed only at the end of the loop pass (bury). */
void sock_kill(struct worker *wk, struct sock *s)
{
    if (s->dead)
        return;
    s->dead = true;
    s->want_recv = false;
    timer_disarm(wk->tw, &s->tm);
    s->grave_next = wk->graveyard;
    wk->graveyard = s;
}

static void bury(void)
{
    while (w.graveyard) {
        struct sock *s = w.graveyard;
        w.graveyard = s->grave_next;
        buf_free(&s->in);
        buf_free(&s->out.sending);
        buf_free(&s->out.pending);
        s->ops->release(s);
    }
}

/* ---- the test user: records what it is told ---- */
enum end_mode {
    END_RELEASE = 0, /* pools `up` (or closes it) in `end`, as every in-tree user does */
    END_HOLD,        /* keeps `up` after `end` */
    END_REGRAB,      /* pools it in `end`, then next_user takes a connection with up_get */
};

#define CAP 8192

struct rec {
    struct upconn *up; /* what this user holds, NULL once it let go */
    char log[CAP];     /* H head, B body, E end, F flush, X failed, D data, O eof */
    uint32_t n_log;
    int heads, bodies, ends, flushes, fails, datas, eofs, flush_after_end;
    uint16_t status[8];
    bool reusable;
    int err;
    const char *what;
    char raw[CAP], data[CAP], tun[CAP];
    char trl[CAP]; /* trailer fields handed over, "name=value;" */
    uint32_t trl_len;
    uint32_t raw_len, data_len, tun_len;
    uint32_t raw_mode_data_len; /* data_len handed over in UP_RAW on a chunked body */
    bool raw_mode_data_null;    /* ... with data NULL */
    /* what it does */
    uint8_t decode;     /* enum up_decode, set in the final head's callback */
    bool tunnel;        /* up_tunnel after a 101 */
    bool skip;          /* up_skip_body in the final head's callback */
    int close_in_head;  /* up_close in the head callback number k (1-based), 0: never */
    bool close_in_body; /* up_close in the first body callback */
    bool close_in_data; /* up_close in the first tunnel data callback */
    enum end_mode end_mode;
    struct rec *next_user; /* END_REGRAB */
};

static struct rec R, R2;

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
}

static struct rec *rec_of(struct upconn *up)
{
    struct rec *r = up->user;

    if (!r)
        fail_msg("a callback for no user");
    if (r->up != up)
        fail_msg("a callback for a user that does not hold this connection");
    return r;
}

static void note(struct rec *r, char c)
{
    if (r->n_log < CAP - 1)
        r->log[r->n_log++] = c;
}

static void append(char *dst, uint32_t *len, const char *p, uint32_t n)
{
    if (!n)
        return;
    assert_true(*len + n <= CAP);
    memcpy(dst + *len, p, n);
    *len += n;
}

static void let_go(struct rec *r, struct upconn *up, bool close)
{
    r->up = NULL;
    if (close)
        up_close(up);
}

static void on_head(struct upconn *up, const struct h1_response *resp)
{
    struct rec *r = rec_of(up);

    note(r, 'H');
    if (r->heads < 8)
        r->status[r->heads] = resp->status;
    r->heads++;
    if (resp->status == 101 && r->tunnel)
        up_tunnel(up);
    if (resp->status >= 200) {
        up->decode = r->decode;
        if (r->skip)
            up_skip_body(up);
    }
    if (r->close_in_head == r->heads)
        let_go(r, up, true);
}

static void on_body(struct upconn *up, const struct up_body *b)
{
    struct rec *r = rec_of(up);

    note(r, 'B');
    r->bodies++;
    assert_true(b->raw_len || b->data_len || b->n_trailers);
    for (uint32_t i = 0; i < b->n_trailers; i++) /* "name=value;" */
        r->trl_len +=
            (uint32_t)snprintf(r->trl + r->trl_len, sizeof(r->trl) - r->trl_len, "%.*s=%.*s;",
                               (int)b->trailers[i].name_len, b->trailers[i].name,
                               (int)b->trailers[i].value_len, b->trailers[i].value);
    if (up->body == H1_BODY_CHUNKED && up->decode == UP_DECODE)
        assert_int_equal(b->raw_len, 0);
    append(r->raw, &r->raw_len, b->raw, b->raw_len);
    if (up->body == H1_BODY_CHUNKED && up->decode == UP_RAW) {
        /* no data in this mode: what is handed over anyway is checked by
         * chunked_raw_gives_no_data, and not read here */
        r->raw_mode_data_len += b->data_len;
        r->raw_mode_data_null |= !b->data;
    } else {
        append(r->data, &r->data_len, b->data, b->data_len);
    }
    if (r->close_in_body)
        let_go(r, up, true);
}

static const struct up_ops rec_ops;

static void on_end(struct upconn *up, bool reusable)
{
    struct rec *r = rec_of(up), *nu = r->next_user;

    note(r, 'E');
    r->ends++;
    r->reusable = reusable;
    if (r->end_mode == END_HOLD)
        return;
    let_go(r, up, false);
    up_release_to_pool(up, reusable);
    if (r->end_mode == END_REGRAB) {
        nu->up = up_get(&w, &tgt, &be, &rec_ops, nu, false);
        assert_non_null(nu->up);
        nu->up->state = US_READY; /* as if connected (a pooled one already is) */
    }
}

static void on_flush(struct upconn *up)
{
    struct rec *r = rec_of(up);

    note(r, 'F');
    r->flushes++;
    if (r->ends)
        r->flush_after_end++;
}

static void on_data(struct upconn *up, char *p, uint32_t n)
{
    struct rec *r = rec_of(up);

    note(r, 'D');
    r->datas++;
    append(r->tun, &r->tun_len, p, n);
    if (r->close_in_data)
        let_go(r, up, true);
}

static void on_eof(struct upconn *up)
{
    struct rec *r = rec_of(up);

    note(r, 'O');
    r->eofs++;
}

static void on_failed(struct upconn *up, int err, const char *what)
{
    struct rec *r = rec_of(up);

    note(r, 'X');
    r->fails++;
    r->err = err;
    r->what = what;
    let_go(r, up, true); /* the callee closes it */
}

static const struct up_ops rec_ops = {
    .head = on_head,
    .body = on_body,
    .end = on_end,
    .flush = on_flush,
    .data = on_data,
    .eof = on_eof,
    .failed = on_failed,
};

/* ---- driving it ---- */

static int setup(void **state)
{
    (void)state;
    memset(&w, 0, sizeof(w));
    srv.rt.n_backends = 1;
    srv.be_slots.cap = 1; /* the pools' size */
    srv.lim = (struct h1_limits){.max_head_bytes = 1024, .max_headers = 64, .max_target_len = 512};
    w.s = &srv;
    w.tw = &tw;
    assert_int_equal(upstream_module.init(&w), 0);
    w.now_ms = 1000;
    timer_wheel_init(&tw, 1000);
    rec_init(&R);
    rec_init(&R2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (R.up)
        up_close(R.up);
    if (R2.up)
        up_close(R2.up);
    R.up = R2.up = NULL;
    pools_close_all(&w);
    upstream_module.fini(&w);
    bury();
    buf_free(&w.dechunk);
    buf_free(&w.synth);
    return 0;
}

/* r takes a connection (pooled if there is one) whose request was sent. */
static struct upconn *start(struct rec *r, uint8_t method)
{
    struct upconn *up = up_get(&w, &tgt, &be, &rec_ops, r, false);

    assert_non_null(up);
    up->state = US_READY; /* as after the connect completed */
    up->req_whole = true;
    up->method = method;
    sock_recv_start(&w, &up->sk);
    up_update_timer(up);
    r->up = up;
    return up;
}

/* One receive: the bytes land in a buffer of their own size (a provided buffer, which the
 * reader may write to), freed after the call, then the loop pass ends. */
static void feed(struct upconn *up, const char *p, size_t n)
{
    char *b = malloc(n ? n : 1);

    assert_non_null(b);
    memcpy(b, p, n);
    up_on_data(up, b, (uint32_t)n);
    free(b);
    bury();
}

static void feed_str(struct upconn *up, const char *s)
{
    feed(up, s, strlen(s));
}

static void feed_eof(struct upconn *up, int err)
{
    up_on_eof(up, err);
    bury();
}

/* Feeds msg in receives cut at cuts[0..n) (increasing), while r still holds its connection.
 * Returns the receives fed. */
static int feed_cut(struct rec *r, const char *msg, size_t len, const size_t *cuts, int n)
{
    size_t from = 0;
    int fed = 0;

    for (int i = 0; i <= n && r->up; i++) {
        size_t to = i < n ? cuts[i] : len;
        feed(r->up, msg + from, to - from);
        from = to;
        fed++;
    }
    return fed;
}

static size_t count(const struct rec *r, char c)
{
    size_t k = 0;

    for (uint32_t i = 0; i < r->n_log; i++)
        k += r->log[i] == c;
    return k;
}

#define CHECK_AT(at, cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("cut at %s: %s (log \"%.*s\")", at, #cond, (int)R.n_log, R.log);              \
    } while (0)

/* What a whole response, however it was cut, must have produced in R: `heads` heads with the
 * statuses st[], one end last (reusable as said), the raw and data body bytes, one flush per
 * receive before the one that ended it, none after. */
struct expect {
    int heads;
    const uint16_t *st;
    bool reusable;
    const char *raw, *data;
};

static void check_response(const char *at, const struct expect *e, int receives)
{
    CHECK_AT(at, R.fails == 0);
    CHECK_AT(at, R.heads == e->heads);
    for (int i = 0; i < e->heads && i < 8; i++)
        CHECK_AT(at, R.status[i] == e->st[i]);
    CHECK_AT(at, R.ends == 1);
    CHECK_AT(at, R.n_log && R.log[R.n_log - 1] == 'E');
    CHECK_AT(at, R.reusable == e->reusable);
    CHECK_AT(at, R.raw_len == strlen(e->raw) && !memcmp(R.raw, e->raw, R.raw_len));
    CHECK_AT(at, R.data_len == strlen(e->data) && !memcmp(R.data, e->data, R.data_len));
    CHECK_AT(at, R.flushes == receives - 1);
    CHECK_AT(at, R.flush_after_end == 0);
    CHECK_AT(at, count(&R, 'H') == (size_t)e->heads);
    CHECK_AT(at, !R.bodies || (const char *)memchr(R.log, 'H', R.n_log) <
                                  (const char *)memchr(R.log, 'B', R.n_log));
    CHECK_AT(at, R.up == NULL); /* released in `end` */
}

/* One run of msg cut at cuts[0..n), checked against e. */
static void check_cut(const char *msg, const struct expect *e, uint8_t method, uint8_t decode,
                      const size_t *cuts, int n)
{
    char at[64];
    int fed;

    rec_init(&R);
    R.decode = decode;
    start(&R, method);
    fed = feed_cut(&R, msg, strlen(msg), cuts, n);
    snprintf(at, sizeof(at), "%zu,%zu (of %zu)", n ? cuts[0] : 0, n > 1 ? cuts[1] : 0, strlen(msg));
    check_response(at, e, fed);
}

/* msg as one receive, cut in two at every offset, in three at every pair, and in receives of
 * one byte. */
static void check_every_cut(const char *msg, const struct expect *e, uint8_t method, uint8_t decode)
{
    size_t len = strlen(msg), cuts[2] = {0};
    int fed = 0;

    check_cut(msg, e, method, decode, cuts, 0);
    for (cuts[0] = 1; cuts[0] < len; cuts[0]++) {
        check_cut(msg, e, method, decode, cuts, 1);
        for (cuts[1] = cuts[0] + 1; cuts[1] < len; cuts[1]++)
            check_cut(msg, e, method, decode, cuts, 2);
    }
    rec_init(&R);
    R.decode = decode;
    start(&R, method);
    for (size_t from = 0, to = 1; to <= len && R.up; to++) {
        feed(R.up, msg + from, to - from);
        from = to;
        fed++;
    }
    check_response("bytes", e, fed);
}

/* ---- the tests ---- */

static const uint16_t st200[] = {200};

#define CL_RESP "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nServer: t\r\n\r\nhello world"

static void whole_response_in_one_receive(void **state)
{
    struct upconn *up;

    (void)state;
    up = start(&R, H1_M_GET);
    feed_str(up, CL_RESP);
    assert_string_equal(R.log, "HBE");
    assert_int_equal(R.status[0], 200);
    assert_true(R.reusable);
    assert_int_equal(R.raw_len, 11);
    assert_memory_equal(R.raw, "hello world", 11);
    assert_int_equal(R.data_len, 11);
    assert_int_equal(w.pools[0].n, 1); /* the user pooled it */
}

static void bytes_after_the_response_are_not_reusable(void **state)
{
    (void)state;
    start(&R, H1_M_GET);
    feed_str(R.up, CL_RESP "HTTP/1.1 200 OK\r\n");
    assert_string_equal(R.log, "HBE");
    assert_false(R.reusable);
    assert_int_equal(R.raw_len, 11); /* the body, not a byte more */
    assert_memory_equal(R.raw, "hello world", 11);
    assert_int_equal(w.pools[0].n, 0);

    /* the rest of the body and the extra bytes in a later receive */
    rec_init(&R);
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
    feed_str(R.up, "lox");
    assert_string_equal(R.log, "HBFBE");
    assert_false(R.reusable);
    assert_int_equal(R.raw_len, 5);
    assert_memory_equal(R.raw, "hello", 5);
}

static void response_cut_anywhere(void **state)
{
    const struct expect e = {1, st200, true, "hello world", "hello world"};

    (void)state;
    check_every_cut(CL_RESP, &e, H1_M_GET, UP_RAW);
}

#define CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"
#define HINTS "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
#define OK_2 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define NO_CONTENT "HTTP/1.1 204 No Content\r\n\r\n"
#define LEN(lit) (sizeof(lit) - 1)

static const uint16_t st_100_200[] = {100, 200};
static const uint16_t st_103_100_204[] = {103, 100, 204};

/* Interim heads, each before the final one, cut anywhere. */
static void interim_continue_then_final(void **state)
{
    const struct expect e = {2, st_100_200, true, "ok", "ok"};
    const struct expect e3 = {3, st_103_100_204, true, "", ""};

    (void)state;
    start(&R, H1_M_GET);
    feed_str(R.up, CONTINUE OK_2);
    assert_string_equal(R.log, "HHBE");
    assert_int_equal(R.status[0], 100);
    assert_int_equal(R.status[1], 200);
    assert_int_equal(R.raw_len, 2);

    rec_init(&R); /* the interim head and part of the final one */
    start(&R, H1_M_GET);
    feed_str(R.up, CONTINUE "HTTP/1.1 200 OK\r\nCont");
    feed_str(R.up, "ent-Length: 2\r\n\r\nok");
    assert_string_equal(R.log, "HFHBE");

    check_every_cut(CONTINUE OK_2, &e, H1_M_GET, UP_RAW);
    check_every_cut(HINTS CONTINUE NO_CONTENT, &e3, H1_M_GET, UP_RAW);
}

/* BUG (reported): an interim head that ends exactly where a receive ends fails the request
 * with -ENOMEM: up_plain_data appends the 0 bytes after it to the empty sk.in, and
 * buf_append(…, 0) on a buffer without storage returns -ENOMEM (buf_reserve returns NULL). */
static void interim_head_ending_a_receive(void **state)
{
    const struct expect e = {2, st_100_200, true, "ok", "ok"};
    const struct expect e3 = {3, st_103_100_204, true, "", ""};

    (void)state;
    start(&R, H1_M_GET);
    feed_str(R.up, CONTINUE);
    assert_string_equal(R.log, "HF");
    feed_str(R.up, OK_2);
    assert_string_equal(R.log, "HFHBE");

    rec_init(&R); /* a close after it is before the response */
    start(&R, H1_M_GET);
    feed_str(R.up, CONTINUE);
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "HFX");
    assert_int_equal(R.err, -ECONNRESET);
    assert_string_equal(R.what, "closed before responding");

    check_every_cut(CONTINUE OK_2, &e, H1_M_GET, UP_RAW);
    check_every_cut(HINTS CONTINUE NO_CONTENT, &e3, H1_M_GET, UP_RAW);
}

static void head_request_has_no_body(void **state)
{
    const char *msg = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    const struct expect e = {1, st200, true, "", ""};

    (void)state;
    start(&R, H1_M_HEAD);
    feed_str(R.up, msg);
    assert_string_equal(R.log, "HE");
    assert_true(R.reusable);
    check_every_cut(msg, &e, H1_M_HEAD, UP_RAW);
    check_every_cut("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &e, H1_M_HEAD,
                    UP_DECODE);

    /* what follows is no body of this response */
    rec_init(&R);
    start(&R, H1_M_HEAD);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_string_equal(R.log, "HE");
    assert_false(R.reusable);
}

static void bodyless_statuses(void **state)
{
    static const uint16_t st204[] = {204}, st304[] = {304};
    const struct expect e204 = {1, st204, true, "", ""}, e304 = {1, st304, true, "", ""};
    const struct expect e0 = {1, st200, true, "", ""};

    (void)state;
    check_every_cut("HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n", &e204, H1_M_GET, UP_RAW);
    check_every_cut("HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\nETag: \"x\"\r\n\r\n",
                    &e304, H1_M_GET, UP_RAW);
    check_every_cut("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &e0, H1_M_GET, UP_RAW);

    rec_init(&R);
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 204 No Content\r\n\r\n");
    assert_string_equal(R.log, "HE");
    assert_true(R.reusable);
    assert_int_equal(w.pools[0].n, 1);

    rec_init(&R); /* the pooled one again: a 204 with a stray byte after it */
    start(&R, H1_M_GET);
    assert_int_equal(w.pools[0].n, 0);
    feed_str(R.up, "HTTP/1.1 204 No Content\r\n\r\nX");
    assert_string_equal(R.log, "HE");
    assert_false(R.reusable);
}

#define CK_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
#define CK_BODY "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\nX-Two: 2\r\n\r\n"

static void chunked_raw(void **state)
{
    const struct expect e = {1, st200, true, CK_BODY, ""};

    (void)state;
    start(&R, H1_M_GET);
    feed_str(R.up, CK_HEAD CK_BODY);
    assert_string_equal(R.log, "HBE");
    assert_true(R.reusable);
    assert_int_equal(R.data_len, 0);
    assert_int_equal(R.raw_len, strlen(CK_BODY));
    check_every_cut(CK_HEAD CK_BODY, &e, H1_M_GET, UP_RAW);
}

/* BUG (reported): UP_RAW hands over data_len = the decoded size with data NULL, where
 * struct up_body says UP_RAW gives no data (data_len 0). */
static void chunked_raw_gives_no_data(void **state)
{
    (void)state;
    start(&R, H1_M_GET);
    feed_str(R.up, CK_HEAD CK_BODY);
    assert_string_equal(R.log, "HBE");
    assert_int_equal(R.raw_mode_data_len, 0);
}

static void chunked_decode(void **state)
{
    const struct expect e = {1, st200, true, "", "hello world"};

    (void)state;
    start(&R, H1_M_GET);
    R.decode = UP_DECODE;
    feed_str(R.up, CK_HEAD CK_BODY);
    assert_string_equal(R.log, "HBE");
    assert_int_equal(R.raw_len, 0);
    assert_int_equal(R.data_len, 11);
    assert_memory_equal(R.data, "hello world", 11);
    /* the trailer section came whole: its fields too (for HTTP/2 clients) */
    assert_string_equal(R.trl, "X-Trailer=yes;X-Two=2;");
    check_every_cut(CK_HEAD CK_BODY, &e, H1_M_GET, UP_DECODE);
}

static void chunked_both(void **state)
{
    const struct expect e = {1, st200, true, CK_BODY, "hello world"};

    (void)state;
    start(&R, H1_M_GET);
    R.decode = UP_BOTH;
    feed_str(R.up, CK_HEAD CK_BODY);
    assert_string_equal(R.log, "HBE");
    assert_int_equal(R.raw_len, strlen(CK_BODY));
    assert_memory_equal(R.raw, CK_BODY, R.raw_len);
    assert_int_equal(R.data_len, 11);
    assert_memory_equal(R.data, "hello world", 11);
    check_every_cut(CK_HEAD CK_BODY, &e, H1_M_GET, UP_BOTH);
}

static void chunked_with_bytes_after_it(void **state)
{
    (void)state;
    for (uint8_t mode = UP_RAW; mode <= UP_BOTH; mode++) {
        rec_init(&R);
        R.decode = mode;
        start(&R, H1_M_GET);
        feed_str(R.up, CK_HEAD "3\r\nabc\r\n");
        feed_str(R.up, "0\r\n\r\nHTTP/1.1 200 OK\r\n");
        assert_int_equal(R.ends, 1);
        assert_false(R.reusable);
        assert_int_equal(R.raw_len, mode == UP_DECODE ? 0 : strlen("3\r\nabc\r\n0\r\n\r\n"));
        assert_int_equal(R.data_len, mode == UP_RAW ? 0 : 3);
    }
}

static void chunked_malformed(void **state)
{
    (void)state;
    /* with the head: the response fails before its head is handed over */
    start(&R, H1_M_GET);
    feed_str(R.up, CK_HEAD "5\r\nhello\r\nZZ\r\n");
    assert_string_equal(R.log, "X");
    assert_int_equal(R.err, -EBADMSG);
    assert_int_equal(R.heads, 0);

    rec_init(&R); /* bad at once, right after the head */
    start(&R, H1_M_GET);
    feed_str(R.up, CK_HEAD "x\r\n");
    assert_string_equal(R.log, "X");
    assert_int_equal(R.err, -EBADMSG);

    /* later: after the head */
    for (uint8_t mode = UP_RAW; mode <= UP_BOTH; mode++) {
        rec_init(&R);
        R.decode = mode;
        start(&R, H1_M_GET);
        feed_str(R.up, CK_HEAD "5\r\nhel");
        feed_str(R.up, "lo\r\nQQ\r\n");
        assert_int_equal(R.heads, 1);
        assert_int_equal(R.fails, 1);
        assert_int_equal(R.err, -EBADMSG);
        assert_int_equal(R.ends, 0);
        assert_int_equal(R.log[R.n_log - 1], 'X');
    }

    rec_init(&R); /* the head alone, then a bad size line */
    start(&R, H1_M_GET);
    feed_str(R.up, CK_HEAD);
    feed_str(R.up, "5\nhello\r\n");
    assert_string_equal(R.log, "HFX");
    assert_int_equal(R.err, -EBADMSG);
}

static void body_until_close(void **state)
{
    static const char *heads[] = {"HTTP/1.1 200 OK\r\nServer: t\r\n\r\n",
                                  "HTTP/1.0 200 OK\r\nServer: t\r\n\r\n",
                                  "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"};

    (void)state;
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        char msg[128];
        rec_init(&R);
        start(&R, H1_M_GET);
        snprintf(msg, sizeof(msg), "%sabc", heads[i]);
        feed_str(R.up, msg);
        feed_str(R.up, "def");
        assert_string_equal(R.log, "HBFBF");
        feed_eof(R.up, 0);
        assert_string_equal(R.log, "HBFBFE");
        assert_false(R.reusable);
        assert_int_equal(R.raw_len, 6);
        assert_memory_equal(R.raw, "abcdef", 6);
        assert_int_equal(w.pools[0].n, 0);
    }

    rec_init(&R); /* no body byte at all */
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\n\r\n");
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "HFE");
    assert_false(R.reusable);

    rec_init(&R); /* a reset is no end */
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.0 200 OK\r\n\r\nabc");
    feed_eof(R.up, -ECONNRESET);
    assert_string_equal(R.log, "HBFX");
    assert_int_equal(R.err, -ECONNRESET);

    /* HTTP/1.0 with a length and keep-alive: reusable */
    rec_init(&R);
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na");
    assert_string_equal(R.log, "HBE");
    assert_true(R.reusable);
}

static void closes_before_the_end(void **state)
{
    (void)state;
    start(&R, H1_M_GET);
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "X");
    assert_int_equal(R.err, -ECONNRESET);
    assert_string_equal(R.what, "closed before responding");

    rec_init(&R); /* part of a head */
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nContent-Le");
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "FX");
    assert_int_equal(R.err, -ECONNRESET);
    assert_string_equal(R.what, "closed before responding");

    rec_init(&R); /* mid-body, length */
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "HBFX");
    assert_int_equal(R.err, -ECONNRESET);
    assert_string_equal(R.what, "closed mid-response");

    rec_init(&R); /* mid-body, chunked */
    start(&R, H1_M_GET);
    feed_str(R.up, CK_HEAD "5\r\nhello\r\n");
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "HBFX");
    assert_int_equal(R.err, -ECONNRESET);

    rec_init(&R); /* an error, not a close */
    start(&R, H1_M_GET);
    feed_eof(R.up, -EPIPE);
    assert_string_equal(R.log, "X");
    assert_int_equal(R.err, -EPIPE);
}

static void malformed_head(void **state)
{
    static const char *bad[] = {
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rec_init(&R);
        start(&R, H1_M_GET);
        feed_str(R.up, bad[i]);
        assert_string_equal(R.log, "X");
        assert_int_equal(R.err, -EBADMSG);
    }
    rec_init(&R); /* good so far, bad in the next receive */
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nServer: t\r\n");
    feed_str(R.up, "Bad Name: x\r\n\r\n");
    assert_string_equal(R.log, "FX");
    assert_int_equal(R.err, -EBADMSG);
}

/* A head that has not ended within its limit: a partial one under max_head_bytes waits;
 * over 2 x max_head_bytes the reader gives up with -E2BIG (its "response head too large"). */
static void head_too_large(void **state)
{
    size_t n = 2 * srv.lim.max_head_bytes + 100;
    char *big = malloc(n);

    (void)state;
    assert_non_null(big);
    memset(big, 'a', n);
    memcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ", 24);

    start(&R, H1_M_GET); /* under the limit, in pieces: it waits */
    feed(R.up, big, 400);
    feed(R.up, big + 400, 400);
    assert_string_equal(R.log, "FF");
    up_close(R.up);
    R.up = NULL;
    bury();

    rec_init(&R);
    start(&R, H1_M_GET);
    feed(R.up, big, n);
    free(big);
    assert_int_equal(R.fails, 1);
    assert_int_equal(R.heads, 0);
    assert_int_equal(R.err, -E2BIG);
    assert_string_equal(R.what, "response head too large");
}

#define SWITCH                                                                                     \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

static void switch_without_tunnel_fails(void **state)
{
    (void)state;
    start(&R, H1_M_GET);
    feed_str(R.up, SWITCH "abc");
    assert_string_equal(R.log, "HX");
    assert_int_equal(R.status[0], 101);
    assert_int_equal(R.err, -EPROTO);
    assert_int_equal(R.datas, 0);
}

static void switch_to_tunnel(void **state)
{
    const char *msg = SWITCH "abc";
    size_t len = strlen(msg);

    (void)state;
    R.tunnel = true;
    start(&R, H1_M_GET);
    feed_str(R.up, msg);
    assert_string_equal(R.log, "HDF");
    feed_str(R.up, "HTTP/1.1 200 OK\r\n\r\n"); /* no longer HTTP: relayed as is */
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "HDFDFO");
    assert_int_equal(R.tun_len, 3 + 19);
    assert_memory_equal(R.tun, "abcHTTP/1.1 200 OK\r\n\r\n", R.tun_len);
    assert_int_equal(R.ends, 0);
    assert_int_equal(R.fails, 0);
    up_close(R.up);
    R.up = NULL;

    /* cut anywhere: one head, the bytes after it in order, one flush a receive */
    for (size_t i = 1; i < len; i++) {
        size_t cut = i;
        int fed;
        rec_init(&R);
        R.tunnel = true;
        start(&R, H1_M_GET);
        fed = feed_cut(&R, msg, len, &cut, 1);
        feed_str(R.up, "def");
        feed_eof(R.up, 0);
        assert_int_equal(R.heads, 1);
        assert_int_equal(R.fails, 0);
        assert_int_equal(R.flushes, fed + 1);
        assert_int_equal(R.eofs, 1);
        assert_int_equal(R.log[R.n_log - 1], 'O');
        assert_int_equal(R.tun_len, 6);
        assert_memory_equal(R.tun, "abcdef", 6);
        up_close(R.up);
        R.up = NULL;
        bury();
    }

    rec_init(&R); /* a reset ends the tunnel as a failure */
    R.tunnel = true;
    start(&R, H1_M_GET);
    feed_str(R.up, SWITCH);
    feed_eof(R.up, -ECONNRESET);
    assert_string_equal(R.log, "HFX");
    assert_int_equal(R.err, -ECONNRESET);
}

static void skip_body(void **state)
{
    static const struct {
        const char *msg;
        uint8_t method;
        bool reusable;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", H1_M_GET, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", H1_M_GET, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", H1_M_GET, true},
        {"HTTP/1.1 204 No Content\r\n\r\n", H1_M_GET, true},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", H1_M_GET, true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", H1_M_HEAD, true},
        {CK_HEAD "5\r\nhello\r\n0\r\n\r\n", H1_M_GET, false},
        {CK_HEAD, H1_M_GET, false},
        {"HTTP/1.1 200 OK\r\n\r\nuntil close", H1_M_GET, false},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", H1_M_GET, true},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rec_init(&R);
        R.skip = true;
        start(&R, cases[i].method);
        feed_str(R.up, cases[i].msg);
        if (R.ends != 1 || R.bodies || R.fails || R.reusable != cases[i].reusable)
            fail_msg("case %zu (%s): log \"%s\", reusable %d", i, cases[i].msg, R.log, R.reusable);
        assert_int_equal(R.log[R.n_log - 1], 'E');
        assert_int_equal(R.flushes, 0);
    }
}

static void close_in_head_or_body(void **state)
{
    (void)state;
    R.close_in_head = 1; /* whole response in one receive */
    start(&R, H1_M_GET);
    feed_str(R.up, CL_RESP);
    assert_string_equal(R.log, "H");

    rec_init(&R); /* the head completed from the kept bytes of a partial one */
    R.close_in_head = 1;
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nContent-");
    feed_str(R.up, "Length: 5\r\n\r\nhello");
    assert_string_equal(R.log, "FH");

    rec_init(&R); /* in an interim head: the final one is nobody's */
    R.close_in_head = 1;
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 100 Continue\r\n\r\n" CL_RESP);
    assert_string_equal(R.log, "H");

    rec_init(&R); /* in a bodyless final head: no end */
    R.close_in_head = 1;
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 204 No Content\r\n\r\n");
    assert_string_equal(R.log, "H");

    rec_init(&R); /* in the body: neither end nor flush */
    R.close_in_body = true;
    start(&R, H1_M_GET);
    feed_str(R.up, CL_RESP);
    assert_string_equal(R.log, "HB");

    for (uint8_t mode = UP_RAW; mode <= UP_BOTH; mode++) {
        rec_init(&R); /* chunked, from kept bytes */
        R.close_in_body = true;
        R.decode = mode;
        start(&R, H1_M_GET);
        feed_str(R.up, "HTTP/1.1 200 OK\r\nTransfer-");
        feed_str(R.up, "Encoding: chunked\r\n\r\n" CK_BODY "trailing");
        assert_string_equal(R.log, "FHB");
    }

    rec_init(&R); /* in the tunnel's data */
    R.tunnel = true;
    R.close_in_data = true;
    start(&R, H1_M_GET);
    feed_str(R.up, SWITCH "abc");
    assert_string_equal(R.log, "HD");
    assert_int_equal(w.pools[0].n, 0);
}

/* The user pools `up` in `end` and a new user (R2) takes it back at once: the rest of the
 * old response's handling tells R2 nothing, and R2's own response reads cleanly. */
static void regrab_case(const char *first, size_t cut, const char *second, bool same)
{
    struct upconn *up;
    size_t len = strlen(first);

    rec_init(&R);
    rec_init(&R2);
    R.end_mode = END_REGRAB;
    R.next_user = &R2;
    R.decode = UP_DECODE;
    up = start(&R, H1_M_GET);
    feed_cut(&R, first, len, &cut, cut ? 1 : 0);
    if (R.ends != 1 || !R2.up || (R2.up == up) != same || R2.n_log)
        fail_msg("\"%s\" cut at %zu: R log \"%s\", R2 log \"%s\", same %d", first, cut, R.log,
                 R2.log, R2.up == up);
    assert_null(R.up);
    assert_int_equal(R.flush_after_end, 0);
    /* R2's own response */
    R2.decode = UP_BOTH;
    feed_str(R2.up, second);
    assert_string_equal(R2.log, "HBE");
    assert_true(R2.reusable);
    assert_int_equal(R2.data_len, 2);
    assert_memory_equal(R2.data, "ok", 2);
    assert_int_equal(R.n_log, strlen(R.log)); /* R heard nothing more */
    assert_null(R2.up);
}

static void pool_and_take_back_in_end(void **state)
{
    static const char *firsts[] = {
        CL_RESP,
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        CK_HEAD CK_BODY,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    };
    const char *second =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";

    (void)state;
    for (size_t i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++)
        for (size_t cut = 0; cut < strlen(firsts[i]); cut++)
            regrab_case(firsts[i], cut, second, true);

    /* not reusable: R2 gets a new connection, and the old one is closed */
    regrab_case(CL_RESP "X", 0, second, false);

    /* a body until close ends at the close */
    rec_init(&R);
    rec_init(&R2);
    R.end_mode = END_REGRAB;
    R.next_user = &R2;
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\n\r\nabc");
    feed_eof(R.up, 0);
    assert_string_equal(R.log, "HBFE");
    assert_non_null(R2.up);
    assert_int_equal(R2.n_log, 0);
}

/* flush: once per receive while the user holds `up`, never after `end`. The flush counts of
 * the cut tests above check the first half with users that pool `up` in `end`; here the user
 * keeps `up` after `end`. */
static void no_flush_after_end(void **state)
{
    (void)state;
    R.end_mode = END_HOLD;
    start(&R, H1_M_GET);
    feed_str(R.up, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n");
    feed_str(R.up, "ab");
    feed_str(R.up, "cd");
    assert_int_equal(R.ends, 1);
    assert_true(R.reusable);
    assert_string_equal(R.log, "HFBFBE");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(whole_response_in_one_receive),
        T(bytes_after_the_response_are_not_reusable),
        T(response_cut_anywhere),
        T(interim_continue_then_final),
        T(interim_head_ending_a_receive),
        T(head_request_has_no_body),
        T(bodyless_statuses),
        T(chunked_raw),
        T(chunked_raw_gives_no_data),
        T(chunked_decode),
        T(chunked_both),
        T(chunked_with_bytes_after_it),
        T(chunked_malformed),
        T(body_until_close),
        T(closes_before_the_end),
        T(malformed_head),
        T(head_too_large),
        T(switch_without_tunnel_fails),
        T(switch_to_tunnel),
        T(skip_body),
        T(close_in_head_or_body),
        T(pool_and_take_back_in_end),
        T(no_flush_after_end),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
