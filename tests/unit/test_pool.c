/* test_pool.c: the per-worker backend connection pool of upstream.c, with the ring and the
 * client side stubbed out: most-recently-used first, max_idle_conns respected, idle timeout
 * and backend-side closes evict, a draining worker pools nothing, a fresh request skips it,
 * a drain ends the requests of background users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../engine/upstream.c"

/* ---- stubs for what upstream.c calls ---- */
#include "stub_sock.h"

static int killed;

void sock_kill(struct worker *w, struct sock *s)
{
    timer_disarm(w->tw, &s->tm);
    s->dead = true;
    killed++;
    up_release((struct upconn *)s); /* no completions pending in this test */
}
/* ---- the pool's user: counts what it is told ---- */
static int failed, try_timeouts;
static void on_failed(struct upconn *up, int err, const char *what)
{
    (void)up;
    (void)err;
    (void)what;
    failed++;
}
static void on_try_timeout(struct upconn *up)
{
    (void)up;
    try_timeouts++;
}
static void on_up(struct upconn *up)
{
    (void)up;
}
static void on_data(struct upconn *up, char *p, uint32_t n)
{
    (void)up;
    (void)p;
    (void)n;
}
static const struct up_ops ops = {
    .ready = on_up,
    .sent = on_up,
    .data = on_data,
    .eof = on_up,
    .failed = on_failed,
    .try_timeout = on_try_timeout,
};

static struct rp_server srv;
static struct worker w;
static struct timer_wheel tw;
static struct backend be = {.addr = "http://127.0.0.1:1", .index = 0};
static struct target tgt = {.idle_timeout_ms = 1000,
                            .max_idle = 3,
                            .connect_timeout_ms = 500,
                            .read_timeout_ms = 500,
                            .write_timeout_ms = 500};
static struct conn client;

static int setup(void **state)
{
    (void)state;
    memset(&w, 0, sizeof(w));
    srv.rt.n_backends = 1;
    srv.be_slots.cap = 1; /* the pools' size */
    w.s = &srv;
    w.tw = &tw;
    assert_int_equal(upstream_module.init(&w), 0);
    w.now_ms = 1000;
    timer_wheel_init(&tw, 1000);
    killed = stub_socks_opened = failed = try_timeouts = 0;
    tgt.max_idle = 3;
    tgt.try_timeout_ms = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pools_close_all(&w);
    upstream_module.fini(&w);
    return 0;
}

/* A connection as if it had just finished a request. */
static struct upconn *used_conn(void)
{
    struct upconn *up = up_get(&w, &tgt, &be, &ops, &client, true);
    up->state = US_READY; /* as after the connect completed */
    return up;
}

static void test_mru_first(void **state)
{
    struct upconn *a = used_conn(), *b = used_conn();

    (void)state;
    up_release_to_pool(a, true);
    up_release_to_pool(b, true);
    assert_int_equal(w.pools[0].n, 2);
    assert_ptr_equal(up_get(&w, &tgt, &be, &ops, &client, false), b);
    assert_true(b->reused);
    assert_ptr_equal(up_get(&w, &tgt, &be, &ops, &client, false), a);
    assert_int_equal(w.pools[0].n, 0);
    up_release_to_pool(a, true);
    up_release_to_pool(b, true);
}

/* max_idle (3 here) connections are always kept; more while as many were lately in use at
 * once (the peak, remembered PEAK_MS): they would be needed again at once. */
static void test_max_idle(void **state)
{
    struct upconn *c[5];

    (void)state;
    for (int i = 0; i < 5; i++)
        c[i] = used_conn();
    for (int i = 0; i < 5; i++)
        up_release_to_pool(c[i], true);
    assert_int_equal(w.pools[0].n, 5); /* the peak of 5 in use keeps all */
    assert_int_equal(killed, 0);
    w.now_ms += PEAK_MS + 1; /* the peak is old: what is in use counts from now */
    c[0] = up_get(&w, &tgt, &be, &ops, &client, false);
    up_release_to_pool(c[0], true);
    assert_int_equal(w.pools[0].n, 4); /* past max_idle, and nothing else in use: closed */
    assert_int_equal(killed, 1);
    c[0] = up_get(&w, &tgt, &be, &ops, &client, false);
    c[1] = up_get(&w, &tgt, &be, &ops, &client, false);
    up_release_to_pool(c[0], true); /* within the peak of 2 (and max_idle): kept */
    assert_int_equal(w.pools[0].n, 3);
    up_release_to_pool(c[1], true);
    assert_int_equal(w.pools[0].n, 3); /* 3 idle + this one past both: closed */
    assert_int_equal(killed, 2);
}

static void test_not_reusable_closes(void **state)
{
    (void)state;
    up_release_to_pool(used_conn(), false);
    assert_int_equal(w.pools[0].n, 0);
    assert_int_equal(killed, 1);
}

static void test_zero_max_idle_disables(void **state)
{
    (void)state;
    tgt.max_idle = 0;
    up_release_to_pool(used_conn(), true);
    assert_int_equal(w.pools[0].n, 0);
}

static void test_idle_timeout_evicts(void **state)
{
    (void)state;
    up_release_to_pool(used_conn(), true);
    w.now_ms = 1500;
    up_release_to_pool(used_conn(), true);
    timer_run(&tw, 2100); /* first one idle 1100 ms, second 600 ms */
    assert_int_equal(w.pools[0].n, 1);
    timer_run(&tw, 2600);
    assert_int_equal(w.pools[0].n, 0);
    assert_int_equal(killed, 2);
}

static void test_backend_close_evicts(void **state)
{
    struct upconn *a = used_conn();

    (void)state;
    up_release_to_pool(a, true);
    assert_true(a->sk.want_recv); /* pooled connections keep a receive armed */
    up_on_eof(a, 0);              /* the backend closed it while idle */
    assert_int_equal(w.pools[0].n, 0);
    a = used_conn();
    up_release_to_pool(a, true);
    up_on_data(a, "x", 1); /* unsolicited bytes: not reusable either */
    assert_int_equal(w.pools[0].n, 0);
}

static void test_draining_pools_nothing(void **state)
{
    (void)state;
    w.draining = true;
    up_release_to_pool(used_conn(), true);
    assert_int_equal(w.pools[0].n, 0);
}

static void test_fresh_skips_pool(void **state)
{
    struct upconn *a = used_conn(), *f;

    (void)state;
    up_release_to_pool(a, true);
    f = up_get(&w, &tgt, &be, &ops, &client, true);
    assert_ptr_not_equal(f, a);
    assert_int_equal(f->state, US_CONNECTING);
    up_start(f);
    assert_int_equal(stub_socks_opened, 1); /* a socket was asked for: a new connection */
    assert_int_equal(w.pools[0].n, 1);
    up_close(f);
}

/* A connection waiting for a response, as after the request was sent. */
static struct upconn *waiting_conn(void)
{
    struct upconn *up = used_conn();

    up->req_whole = true;
    sock_recv_start(&w, &up->sk);
    up_update_timer(up);
    return up;
}

/* While the client's body is still coming, the backend is not late: no read timeout runs
 * (the client's own timer does), until the whole request is queued. */
static void test_read_timeout_waits_for_the_whole_request(void **state)
{
    struct upconn *a = used_conn();

    (void)state;
    sock_recv_start(&w, &a->sk);
    up_update_timer(a);
    assert_false(timer_armed(&a->sk.tm));
    a->req_whole = true;
    up_update_timer(a);
    assert_true(timer_armed(&a->sk.tm));
    assert_int_equal(a->sk.tm.deadline_ms, 1000 + 500);
    up_close(a);
}

/* try_timeout runs from the attempt's start to its first response byte, once, and before
 * the read timeout; without one the read timeout alone applies. */
static void test_try_timeout(void **state)
{
    struct upconn *a;

    (void)state;
    tgt.try_timeout_ms = 100;
    a = waiting_conn();
    assert_int_equal(a->sk.tm.deadline_ms, 1100);
    timer_run(&tw, 1099);
    assert_int_equal(try_timeouts, 0);
    timer_run(&tw, 1100);
    assert_int_equal(try_timeouts, 1);
    assert_int_equal(failed, 0);
    assert_int_equal(a->try_deadline_ms, 0); /* fired: the attempt goes on */
    up_update_timer(a);
    assert_int_equal(a->sk.tm.deadline_ms, 1000 + 500); /* read_timeout, from w.now_ms */
    up_close(a);

    a = waiting_conn(); /* a response byte stops it */
    w.now_ms = 1050;
    up_on_data(a, "H", 1);
    assert_true(a->got_bytes);
    assert_int_equal(a->sk.tm.deadline_ms, 1550);
    timer_run(&tw, 1200);
    assert_int_equal(try_timeouts, 1);
    up_close(a);

    tgt.try_timeout_ms = 0;
    a = waiting_conn();
    assert_int_equal(a->try_deadline_ms, 0);
    assert_int_equal(a->sk.tm.deadline_ms, 1050 + 500);
    up_close(a);
}

/* A background user's connections (nobody waits for them) are ended by a drain; an
 * exchange's are not, and one back in the pool is no longer the background user's. */
static int bg_failed, bg_err;
static void on_bg_failed(struct upconn *up, int err, const char *what)
{
    (void)what;
    bg_failed++;
    bg_err = err;
    up_close(up);
}
static const struct up_ops bg_ops = {
    .ready = on_up,
    .sent = on_up,
    .data = on_data,
    .eof = on_up,
    .failed = on_bg_failed,
    .try_timeout = on_try_timeout,
    .background = true,
};

static void test_drain_fails_background_requests(void **state)
{
    struct upconn *mine = up_get(&w, &tgt, &be, &ops, &client, true);
    struct upconn *a = up_get(&w, &tgt, &be, &bg_ops, &client, true);
    struct upconn *b = up_get(&w, &tgt, &be, &bg_ops, &client, true);

    (void)state;
    bg_failed = 0;
    assert_ptr_equal(w.background.next, &b->link); /* newest first */
    b->state = US_READY;
    up_release_to_pool(b, true); /* done: pooled, off the background list */
    assert_ptr_equal(w.background.next, &a->link);
    assert_ptr_equal(a->link.next, &w.background);                    /* a alone */
    assert_ptr_equal(up_get(&w, &tgt, &be, &ops, &client, false), b); /* now an exchange's */
    w.draining = true;
    pools_close_all(&w);
    assert_int_equal(bg_failed, 1);
    assert_int_equal(bg_err, -ECANCELED);
    assert_true(list_empty(&w.background));
    assert_false(mine->sk.dead);
    assert_false(b->sk.dead);
    up_close(mine);
    up_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mru_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_reusable_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_max_idle_disables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_evicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_close_evicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_pools_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_skips_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_try_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout_waits_for_the_whole_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drain_fails_background_requests, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
