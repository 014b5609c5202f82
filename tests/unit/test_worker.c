/* test_worker.c: the ring plumbing of engine/worker.c that the rest of the engine relies on
 * for correctness: sock_unsend, which lets a request that provably never reached a backend
 * be sent again (a send whose SQE the kernel has not read is taken back; one it has read is
 * not). Runs a real ring over a socketpair.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

struct fixture {
    struct worker w;
    struct sock s;
    int peer;
};

static const struct sock_ops no_ops;

static int setup(void **state)
{
    static struct fixture f;
    int sv[2];

    memset(&f, 0, sizeof(f));
    if (io_uring_queue_init(16, &f.w.ring, 0))
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
        return -1;
    sock_init(&f.s, sv[0], &no_ops);
    f.peer = sv[1];
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    close(f->s.fd);
    close(f->peer);
    buf_free(&f->s.out.sending);
    buf_free(&f->s.out.pending);
    io_uring_queue_exit(&f->w.ring);
    return 0;
}

/* Submits and returns the one completion, checking it is the sock's send. */
static int reap_send(struct fixture *f)
{
    struct io_uring_cqe *cqe;
    int res;

    assert_true(io_uring_submit(&f->w.ring) >= 0);
    assert_int_equal(io_uring_wait_cqe(&f->w.ring, &cqe), 0);
    assert_int_equal(cqe->user_data, ud_of(&f->s, OP_SEND));
    res = cqe->res;
    io_uring_cqe_seen(&f->w.ring, cqe);
    return res;
}

static void unsent_send_is_taken_back(void **state)
{
    struct fixture *f = *state;
    char got[16];

    assert_int_equal(sock_queue(&f->s, "GET / HTTP/1.1\r\n", 16), 0);
    sock_flush(&f->w, &f->s);
    assert_true(f->s.out.busy);
    assert_true(sock_unsend(&f->w, &f->s));
    assert_int_equal(reap_send(f), 0); /* the no-op's result */
    assert_int_equal(recv(f->peer, got, sizeof(got), 0), -1);
    assert_int_equal(errno, EAGAIN); /* not one byte reached the peer */
}

static void submitted_send_is_not_taken_back(void **state)
{
    struct fixture *f = *state;
    char got[16];

    assert_int_equal(sock_queue(&f->s, "POST /pay HTTP/1", 16), 0);
    sock_flush(&f->w, &f->s);
    assert_int_equal(io_uring_submit(&f->w.ring), 1);
    assert_false(sock_unsend(&f->w, &f->s)); /* the kernel has it: it may be read */
    assert_int_equal(reap_send(f), 16);
    assert_int_equal(recv(f->peer, got, sizeof(got), 0), 16);
    assert_memory_equal(got, "POST /pay HTTP/1", 16);
}

static void only_the_socks_own_send_is_taken_back(void **state)
{
    struct fixture *f = *state;
    struct sock other;
    struct io_uring_cqe *cqe;
    char got[4];

    sock_init(&other, f->s.fd, &no_ops);
    assert_false(sock_unsend(&f->w, &f->s)); /* nothing in flight */
    assert_int_equal(sock_queue(&other, "abcd", 4), 0);
    sock_flush(&f->w, &other); /* another sock's send waits in the SQ */
    assert_false(sock_unsend(&f->w, &f->s));
    assert_int_equal(io_uring_submit_and_wait(&f->w.ring, 1), 1);
    assert_int_equal(io_uring_peek_cqe(&f->w.ring, &cqe), 0);
    assert_int_equal(cqe->res, 4);
    io_uring_cqe_seen(&f->w.ring, cqe);
    assert_int_equal(recv(f->peer, got, sizeof(got), 0), 4);
    buf_free(&other.out.sending);
    buf_free(&other.out.pending);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(unsent_send_is_taken_back, setup, teardown),
        cmocka_unit_test_setup_teardown(submitted_send_is_not_taken_back, setup, teardown),
        cmocka_unit_test_setup_teardown(only_the_socks_own_send_is_taken_back, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
