/* test_snapshot.c: reload's matching (engine/snapshot.c) without workers or sockets: which
 * backends are kept (the same object, index and counters), which retire, how slots are
 * handed out and given back, what the file resets, and that a reload without room changes
 * nothing. Servers here have no listeners, so nothing binds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "log.h"

static const char *const X = "http://127.0.0.1:8001", *const Y = "http://127.0.0.1:8002",
                         *const Z = "http://127.0.0.1:8003";

static void no_listeners(rp_server *s)
{
    for (size_t i = 0; i < s->n_listen; i++)
        free(s->listen[i].addr);
    s->n_listen = 0; /* the default 0.0.0.0:8080: nothing binds in a unit test */
}

/* A server with domains[i] = {name, its backends}, and no listener. */
static rp_server *server_of(const char *const *names, const char *const *const *backends,
                            const int *const *weights, size_t n)
{
    rp_server_config cfg = {.workers = 2};
    rp_server *s = rp_server_new(&cfg);

    assert_non_null(s);
    no_listeners(s);
    for (size_t i = 0; i < n; i++) {
        rp_backend_config bc[4] = {{0}};
        size_t k = 0;
        for (; backends[i][k]; k++)
            bc[k] = (rp_backend_config){backends[i][k], weights ? weights[i][k] : 1};
        rp_domain_config d = {.domain = names[i], .backends = bc, .n_backends = k};
        assert_int_equal(rp_add_proxy_domain(s, &d), 0);
    }
    return s;
}

/* As rp_listen_and_serve sets it up, without workers. */
static void start(rp_server *s)
{
    s->nworkers = s->nthreads = 2;
    atomic_store(&s->running, 1);
    assert_int_equal(snapshot_init(s), 0);
    assert_int_equal(health_table_init(&s->health, &s->snap->rt, s->be_slots.cap), 0);
}

static void stop(rp_server *s)
{
    snapshot_fini(s);
    free(s->health);
    s->health = NULL;
    atomic_store(&s->running, 0);
    rp_server_free(s);
}

static struct target *target(struct snapshot *snap, const char *label)
{
    for (uint32_t i = 0; i < route_count(&snap->rt); i++)
        if (!strcmp(route_target(&snap->rt, i)->label, label))
            return route_target(&snap->rt, i);
    fail_msg("no target %s", label);
    return NULL;
}

static void test_kept_backends_are_the_same_objects(void **state)
{
    const char *const a1[] = {X, Y, NULL}, *const a2[] = {Y, Z, NULL}, *const b2[] = {X, NULL};
    const char *const n1[] = {"a.test"}, *const n2[] = {"a.test", "b.test"};
    const char *const *const be1[] = {a1}, *const *const be2[] = {a2, b2};
    const int w2a[] = {3, 1}, w2b[] = {1};
    const int *const w2[] = {w2a, w2b};
    rp_server *s = server_of(n1, be1, NULL, 1), *staged = server_of(n2, be2, w2, 2);
    struct snapshot *old;
    struct backend *x, *y;
    char msg[512];

    (void)state;
    start(s);
    old = snapshot_acquire(s); /* as a worker still serving requests on it would */
    x = target(old, "a.test")->backends[0];
    y = target(old, "a.test")->backends[1];
    atomic_store(&y->weight, 50); /* as the admin API would */
    atomic_store(&y->drained, true);
    atomic_store(&y->requests, 7);
    assert_int_equal(rp_server_reload(s, staged, msg, sizeof(msg)), 0);
    assert_string_equal(msg, "generation 2: domains and routes +1 -0, backends +2 -1 (1 kept), "
                             "listeners +0 -0");
    assert_int_equal(rp_server_generation(s), 2);
    assert_int_equal(atomic_load(&s->reloads), 1);
    struct target *a = target(s->snap, "a.test"), *b = target(s->snap, "b.test");
    assert_ptr_equal(a->backends[0], y); /* kept: counters and index with it */
    assert_int_equal(atomic_load(&y->requests), 7);
    assert_int_equal(atomic_load(&y->weight), 3); /* the file is the truth again */
    assert_false(atomic_load(&y->drained));
    assert_int_equal(a->index, target(old, "a.test")->index); /* its metrics rows */
    assert_true(atomic_load(&x->retired));                    /* gone from a.test */
    assert_false(atomic_load(&y->retired));
    assert_ptr_not_equal(b->backends[0], x); /* the same address in another domain is new */
    assert_int_not_equal(b->backends[0]->index, x->index); /* x's slot is still held */
    assert_int_not_equal(a->backends[1]->index, x->index);
    assert_ptr_equal(s->health[y->index].be, y);
    uint32_t x_index = x->index;
    snapshot_put(s, old); /* the last user of the old one: x goes, its slot is free again */
    assert_int_equal(s->be_slots.refs[x_index], 0);
    assert_int_equal(s->be_slots.refs[y->index], 1);
    rp_server_free(staged);
    stop(s);
}

static void test_no_room_changes_nothing(void **state)
{
    const char *const a1[] = {X, NULL}, *const n1[] = {"a.test"};
    const char *const *const be1[] = {a1};
    rp_server *s = server_of(n1, be1, NULL, 1);
    char msg[512];

    (void)state;
    start(s);
    struct snapshot *before = s->snap;
    uint32_t room = slots_free_count(&s->be_slots);
    rp_server_config cfg = {.workers = 2};
    rp_server *big = rp_server_new(&cfg);
    no_listeners(big);
    /* one backend per domain, one more than there are free slots */
    for (uint32_t i = 0; i <= room; i++) {
        char name[32], addr[64];
        snprintf(name, sizeof(name), "d%u.test", i);
        snprintf(addr, sizeof(addr), "http://127.0.0.%u:%u", 1 + i / 60000, 1 + i % 60000);
        rp_backend_config bc = {addr, 1};
        rp_domain_config d = {.domain = name, .backends = &bc, .n_backends = 1};
        assert_int_equal(rp_add_proxy_domain(big, &d), 0);
    }
    assert_int_equal(rp_server_reload(s, big, msg, sizeof(msg)), -ENOSPC);
    assert_non_null(strstr(msg, "restart"));
    assert_ptr_equal(s->snap, before);
    assert_int_equal(rp_server_generation(s), 1);
    assert_int_equal(slots_free_count(&s->be_slots), room); /* none taken, none leaked */
    rp_server_free(big);
    stop(s);
}

static void test_workers_change_is_reported_and_not_applied(void **state)
{
    const char *const a1[] = {X, NULL}, *const n1[] = {"a.test"};
    const char *const *const be1[] = {a1};
    rp_server *s = server_of(n1, be1, NULL, 1), *staged = server_of(n1, be1, NULL, 1);
    char msg[512];

    (void)state;
    start(s);
    staged->cfg.workers = 5;
    staged->cfg.keepalive_timeout_ms = 1234;
    assert_int_equal(rp_server_reload(s, staged, msg, sizeof(msg)), 0);
    assert_non_null(strstr(msg, "workers 2 -> 5 needs a restart (kept 2)"));
    assert_int_equal(s->snap->cfg.keepalive_timeout_ms, 1234); /* settings do apply */
    assert_null(s->snap->cfg.listen);                          /* no borrowed pointers */
    assert_int_equal(s->nworkers, 2);
    rp_server_free(staged);
    stop(s);
}

static void test_not_running_is_refused(void **state)
{
    const char *const a1[] = {X, NULL}, *const n1[] = {"a.test"};
    const char *const *const be1[] = {a1};
    rp_server *s = server_of(n1, be1, NULL, 1), *staged = server_of(n1, be1, NULL, 1);
    char msg[128];

    (void)state;
    assert_int_equal(rp_server_reload(s, staged, msg, sizeof(msg)), -EAGAIN);
    assert_string_equal(msg, "the server is not running");
    rp_server_free(staged);
    rp_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_backends_are_the_same_objects),
        cmocka_unit_test(test_no_room_changes_nothing),
        cmocka_unit_test(test_workers_change_is_reported_and_not_applied),
        cmocka_unit_test(test_not_running_is_refused),
    };

    rp_log_set_level(RP_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
