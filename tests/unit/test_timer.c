/* test_timer.c: the timing wheel fires each timer once, at or after its deadline, never
 * early, including deadlines beyond the wheel's span and callbacks that re-arm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "timer.h"

struct probe {
    struct timer t;
    uint64_t fired_at;
    int count;
    int rearm;
};

static struct timer_wheel tw;

static void on_fire(struct timer *t, uint64_t now)
{
    struct probe *p = (struct probe *)t;

    p->fired_at = now;
    p->count++;
    if (p->rearm-- > 0)
        timer_arm(&tw, t, now + 100);
}

static void test_fires_once_not_early(void **state)
{
    struct probe p[50] = {0};

    (void)state;
    timer_wheel_init(&tw, 1000);
    for (int i = 0; i < 50; i++) {
        p[i].t.fn = on_fire;
        timer_arm(&tw, &p[i].t, 1000 + (uint64_t)i * 37);
    }
    for (uint64_t now = 1000; now < 4000; now += 7) {
        timer_run(&tw, now);
        for (int i = 0; i < 50; i++)
            if (p[i].count)
                assert_true(p[i].fired_at >= 1000 + (uint64_t)i * 37);
    }
    for (int i = 0; i < 50; i++) {
        assert_int_equal(p[i].count, 1);
        assert_true(p[i].fired_at < 1000 + (uint64_t)i * 37 + 20);
    }
    assert_int_equal(tw.armed, 0);
}

static void test_beyond_span(void **state)
{
    struct probe p = {.t.fn = on_fire};
    uint64_t deadline = 5000 + 3ull * TIMER_SLOTS * TIMER_SLOT_MS + 123;

    (void)state;
    timer_wheel_init(&tw, 5000);
    timer_arm(&tw, &p.t, deadline);
    for (uint64_t now = 5000; now < deadline; now += 500) {
        timer_run(&tw, now);
        assert_int_equal(p.count, 0);
    }
    timer_run(&tw, deadline + 16);
    assert_int_equal(p.count, 1);
}

static void test_disarm_and_rearm(void **state)
{
    struct probe a = {.t.fn = on_fire}, b = {.t.fn = on_fire, .rearm = 2};

    (void)state;
    timer_wheel_init(&tw, 0);
    timer_arm(&tw, &a.t, 100);
    timer_arm(&tw, &b.t, 100);
    timer_disarm(&tw, &a.t);
    timer_disarm(&tw, &a.t); /* twice is harmless */
    for (uint64_t now = 0; now <= 1000; now += 10)
        timer_run(&tw, now);
    assert_int_equal(a.count, 0);
    assert_int_equal(b.count, 3);
    assert_false(timer_armed(&b.t));
}

static void test_past_deadline_fires_next_run(void **state)
{
    struct probe p = {.t.fn = on_fire};

    (void)state;
    timer_wheel_init(&tw, 10000);
    timer_run(&tw, 10000);
    timer_arm(&tw, &p.t, 5);
    timer_run(&tw, 10001);
    assert_int_equal(p.count, 1);
}

/* A callback that re-arms another timer: an HTTP/2 stream's timeout re-arms its connection's
 * (stream_detach's conn_update_timer). */
struct mover {
    struct probe p;
    struct timer *other;
    uint64_t to;
};

static void on_fire_move(struct timer *t, uint64_t now)
{
    struct mover *m = (struct mover *)t;

    on_fire(t, now);
    timer_arm(&tw, m->other, m->to);
}

/* Found by fuzz_h2_session (fixed): the callback moved the timer after it in the slot to
 * another slot, and the run went on along that slot's list to its head, which it "fired" (a
 * NULL fn): a crash. */
static void test_callback_moves_the_next_timer(void **state)
{
    struct mover a = {.p.t.fn = on_fire_move};
    struct probe b = {.t.fn = on_fire}, c = {.t.fn = on_fire};

    (void)state;
    timer_wheel_init(&tw, 0);
    a.other = &b.t;
    a.to = 5000;
    timer_arm(&tw, &a.p.t, 100); /* one slot: a, b, c in that order */
    timer_arm(&tw, &b.t, 101);
    timer_arm(&tw, &c.t, 102);
    timer_run(&tw, 200);
    assert_int_equal(a.p.count, 1);
    assert_int_equal(b.count, 0);
    assert_int_equal(c.count, 1);
    assert_true(timer_armed(&b.t));
    timer_run(&tw, 5016);
    assert_int_equal(b.count, 1);
    assert_int_equal(tw.armed, 0);
}

/* The same within the slot (a full turn later is the same slot, at its tail): the timers
 * after the moved one, due, still fire in this run, not a turn later. */
static void test_callback_moves_the_next_timer_in_its_slot(void **state)
{
    struct mover a = {.p.t.fn = on_fire_move};
    struct probe b = {.t.fn = on_fire}, c = {.t.fn = on_fire};

    (void)state;
    timer_wheel_init(&tw, 0);
    a.other = &b.t;
    a.to = 101 + (uint64_t)TIMER_SLOTS * TIMER_SLOT_MS;
    timer_arm(&tw, &a.p.t, 100);
    timer_arm(&tw, &b.t, 101);
    timer_arm(&tw, &c.t, 102);
    timer_run(&tw, 200);
    assert_int_equal(a.p.count, 1);
    assert_int_equal(b.count, 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(tw.armed, 1);
}

static void test_next_ms(void **state)
{
    struct probe p = {.t.fn = on_fire};

    (void)state;
    timer_wheel_init(&tw, 0);
    assert_int_equal(timer_next_ms(&tw, 0, 100), 100);
    timer_arm(&tw, &p.t, 500);
    assert_true(timer_next_ms(&tw, 3, 100) <= TIMER_SLOT_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_once_not_early),
        cmocka_unit_test(test_beyond_span),
        cmocka_unit_test(test_disarm_and_rearm),
        cmocka_unit_test(test_past_deadline_fires_next_run),
        cmocka_unit_test(test_next_ms),
        cmocka_unit_test(test_callback_moves_the_next_timer),
        cmocka_unit_test(test_callback_moves_the_next_timer_in_its_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
