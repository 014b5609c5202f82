/* stub_sock.h: the worker's socket calls that upstream.c makes, stubbed for unit tests that
 * include upstream.c with the ring left out (test_pool.c, test_upstream.c). Nothing is sent:
 * queued bytes are dropped, a receive is only marked wanted. Each test defines sock_kill
 * itself (at once, or at the end of a pretend loop pass). Include once, after upstream.c. */
#ifndef RP_TEST_STUB_SOCK_H
#define RP_TEST_STUB_SOCK_H

static int stub_socks_opened; /* sock_open calls: new connections */
static struct io_uring_sqe stub_sqe;

struct io_uring_sqe *w_sqe(struct worker *wk)
{
    (void)wk;
    memset(&stub_sqe, 0, sizeof(stub_sqe));
    return &stub_sqe;
}
void sock_init(struct sock *s, int fd, const struct sock_ops *ops)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->ops = ops;
}
void sock_open(struct worker *wk, struct sock *s, int family)
{
    (void)wk;
    (void)s;
    (void)family;
    stub_socks_opened++;
}
void sock_connect(struct worker *wk, struct sock *s, const struct sockaddr_storage *sa,
                  socklen_t len)
{
    (void)wk;
    (void)s;
    (void)sa;
    (void)len;
}
int sock_queue(struct sock *s, const void *p, uint32_t n)
{
    (void)s;
    (void)p;
    (void)n;
    return 0;
}
void sock_recv_start(struct worker *wk, struct sock *s)
{
    (void)wk;
    s->want_recv = true;
}
void sock_flush(struct worker *wk, struct sock *s)
{
    (void)wk;
    (void)s;
}

#endif /* RP_TEST_STUB_SOCK_H */
