/* worker.c: one worker thread and its io_uring ring: set-up with feature fallbacks, the
 * submit-and-reap loop, multishot accept, multishot receive into provided buffers, one send
 * in flight per socket, cancellation and close. HTTP logic lives in session_h1.c,
 * exchange.c and upstream.c; this file only moves bytes and completions to them.
 */
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../tls/tls.h"
#include "bufring.h"
#include "internal.h"
#include "log.h"
#include "uring_compat.h"

#define RING_ENTRIES 4096
#define BUF_GROUP 0
#define NBUFS 512
#define ADMIN_NBUFS 32
#define BUFSZ (16u * 1024)

/* ---- slabs ------------------------------------------------------------------------------ */

void slab_init(struct slab *sl, size_t objsz, uint32_t per_block)
{
    memset(sl, 0, sizeof(*sl));
    /* keep every object 16-byte aligned: CQE user_data uses the low bits */
    sl->objsz = (uint32_t)((objsz + 15) & ~(size_t)15);
    sl->per_block = per_block;
}

#if defined(__SANITIZE_ADDRESS__)
/* Under ASan every object is its own allocation, so a use after free is caught. */
void *slab_alloc(struct slab *sl)
{
    return calloc(1, sl->objsz);
}

void slab_free(struct slab *sl, void *p)
{
    (void)sl;
    free(p);
}
#else
void *slab_alloc(struct slab *sl)
{
    void *p;

    if (!sl->free) {
        char *blk;
        void **blocks = realloc(sl->blocks, (sl->n_blocks + 1) * sizeof(void *));
        if (!blocks)
            return NULL;
        sl->blocks = blocks;
        if (posix_memalign((void **)&blk, 64, (size_t)sl->objsz * sl->per_block))
            return NULL;
        sl->blocks[sl->n_blocks++] = blk;
        for (uint32_t i = sl->per_block; i-- > 0;)
            slab_free(sl, blk + (size_t)i * sl->objsz);
    }
    p = sl->free;
    sl->free = *(void **)p;
    memset(p, 0, sl->objsz);
    return p;
}

void slab_free(struct slab *sl, void *p)
{
    *(void **)p = sl->free;
    sl->free = p;
}
#endif

void slab_fini(struct slab *sl)
{
    for (uint32_t i = 0; i < sl->n_blocks; i++)
        free(sl->blocks[i]);
    free(sl->blocks);
    memset(sl, 0, sizeof(*sl));
}

/* ---- ring plumbing ----------------------------------------------------------------------- */

uint64_t w_now(struct worker *w)
{
    return w->now_ms;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct io_uring_sqe *w_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

    if (!sqe) { /* SQ full: push what we have and take a fresh slot */
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    /* The SQ holds RING_ENTRIES and we just emptied it: this cannot fail. */
    w->ops++;
    return sqe;
}

void sock_init(struct sock *s, int fd, const struct sock_ops *ops)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->ops = ops;
}

void sock_recv_start(struct worker *w, struct sock *s)
{
    struct io_uring_sqe *sqe;

    s->want_recv = true;
    if (s->recv != RECV_OFF || s->dead)
        return;
    if (s->ops->recv_ctl) { /* no socket of its own */
        s->recv = RECV_ARMED;
        s->ops->recv_ctl(s, true);
        return;
    }
    sqe = w_sqe(w);
    io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    sqe->user_data = ud_of(s, OP_RECV);
    s->recv = RECV_ARMED;
    s->inflight++;
}

void sock_recv_stop(struct worker *w, struct sock *s)
{
    struct io_uring_sqe *sqe;

    s->want_recv = false;
    if (s->recv != RECV_ARMED)
        return;
    if (s->ops->recv_ctl) {
        s->recv = RECV_OFF;
        s->ops->recv_ctl(s, false);
        return;
    }
    sqe = w_sqe(w);
    io_uring_prep_cancel64(sqe, ud_of(s, OP_RECV), 0);
    sqe->user_data = 0;
    s->recv = RECV_CANCELLING;
}

void sock_flush(struct worker *w, struct sock *s)
{
    struct outq *q = &s->out;
    struct io_uring_sqe *sqe;

    if (s->ops->flush && !s->dead) { /* no socket of its own: its owner sends */
        s->ops->flush(s);
        return;
    }
    if (q->busy || s->dead || s->fd < 0)
        return;
    if (!buf_used(&q->sending)) {
        struct buf t = q->sending;
        q->sending = q->pending;
        q->pending = t;
        q->pending.off = q->pending.len = 0;
    }
    if (!buf_used(&q->sending))
        return;
    sqe = w_sqe(w);
    io_uring_prep_send(sqe, s->fd, buf_data(&q->sending), buf_used(&q->sending), MSG_NOSIGNAL);
    sqe->user_data = ud_of(s, OP_SEND);
    q->busy = true;
    s->inflight++;
}

bool sock_unsend(struct worker *w, struct sock *s)
{
    struct io_uring_sq *sq = &w->ring.sq;
    uint64_t ud = ud_of(s, OP_SEND);

    if (!s->out.busy)
        return false;
    /* liburing hands out SQEs from sqe_head to sqe_tail and gives them to the kernel only
     * when it submits: one in that range has not been read by the kernel yet */
    for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
        struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
        if (sqe->user_data != ud || sqe->opcode != IORING_OP_SEND)
            continue;
        io_uring_prep_nop(sqe); /* completes with 0, as the send would have: on_send frees */
        sqe->user_data = ud;
        return true;
    }
    return false;
}

void sock_open(struct worker *w, struct sock *s, int family)
{
    struct io_uring_sqe *sqe;
    int fd;

    if (w->has_socket_op) {
        sqe = w_sqe(w);
        io_uring_prep_socket(sqe, family, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
        sqe->user_data = ud_of(s, OP_SOCKET);
        s->inflight++;
        return;
    }
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    s->ops->on_socket(s, fd < 0 ? -errno : fd);
}

void sock_connect(struct worker *w, struct sock *s, const struct sockaddr_storage *sa,
                  socklen_t len)
{
    struct io_uring_sqe *sqe = w_sqe(w);

    io_uring_prep_connect(sqe, s->fd, (const struct sockaddr *)sa, len);
    sqe->user_data = ud_of(s, OP_CONNECT);
    s->inflight++;
    s->connecting = true;
}

void sock_shutdown_write(struct worker *w, struct sock *s)
{
    struct io_uring_sqe *sqe;

    if (s->dead || s->fd < 0 || s->shutting)
        return;
    sqe = w_sqe(w);
    io_uring_prep_shutdown(sqe, s->fd, SHUT_WR);
    sqe->user_data = ud_of(s, OP_SHUTDOWN);
    s->inflight++;
    s->shutting = true;
}

int sock_queue(struct sock *s, const void *p, uint32_t n)
{
    return buf_append(&s->out.pending, p, n) ? -ENOMEM : 0;
}

static void close_fd(struct worker *w, int fd)
{
    struct io_uring_sqe *sqe = w_sqe(w);

    io_uring_prep_close(sqe, fd);
    sqe->user_data = 0;
}

static void sock_free_bufs(struct sock *s)
{
    buf_free(&s->in);
    buf_free(&s->out.sending);
    buf_free(&s->out.pending);
}

static void sock_finish(struct worker *w, struct sock *s)
{
    if (s->fd >= 0) {
        close_fd(w, s->fd);
        s->fd = -1;
    }
    sock_free_bufs(s);
    w->frees_since_trim++;
    s->ops->release(s);
}

/* A dead sock with nothing in flight is freed at the end of the loop pass, never inside
 * the handler that killed it: callers up the stack may still look at it. */
static void sock_bury(struct worker *w, struct sock *s)
{
    s->grave_next = w->graveyard;
    w->graveyard = s;
}

static void bury_all(struct worker *w)
{
    while (w->graveyard) {
        struct sock *s = w->graveyard;
        w->graveyard = s->grave_next;
        sock_finish(w, s);
    }
}

static void cancel_linked(struct worker *w, struct sock *s, enum op op)
{
    struct io_uring_sqe *sqe = w_sqe(w);

    /* by user_data: a hash lookup in the kernel, where cancelling by fd scans every
     * pending request of the ring */
    io_uring_prep_cancel64(sqe, ud_of(s, op), 0);
    sqe->flags |= IOSQE_IO_HARDLINK;
    sqe->user_data = 0;
}

void sock_kill(struct worker *w, struct sock *s)
{
    if (s->dead)
        return;
    s->dead = true;
    s->want_recv = false;
    timer_disarm(w->tw, &s->tm);
    if (s->inflight && s->fd >= 0) {
        /* cancel what is in flight, then close, in one submission: the hard links run the
         * close whatever the cancels found; the completions still hold the sock until the
         * last one has arrived */
        if (io_uring_sq_space_left(&w->ring) < 4)
            io_uring_submit(&w->ring); /* a link must not straddle two submissions */
        if (s->recv == RECV_ARMED)
            cancel_linked(w, s, OP_RECV);
        if (s->out.busy)
            cancel_linked(w, s, OP_SEND);
        if (s->connecting)
            cancel_linked(w, s, OP_CONNECT);
        if (s->shutting) { /* the shutdown must run first: close when it has completed */
            struct io_uring_sqe *sqe = w_sqe(w);
            io_uring_prep_nop(sqe); /* ends the chain of hard links */
            sqe->user_data = 0;
            return;
        }
        close_fd(w, s->fd);
        s->fd = -1;
        return;
    }
    if (!s->inflight)
        sock_bury(w, s);
}

/* A completion for `s` arrived; drops its reference, returns false if s is gone. */
static bool sock_put(struct worker *w, struct sock *s, bool last)
{
    if (last)
        s->inflight--;
    if (s->dead) {
        if (!s->inflight)
            sock_bury(w, s);
        return false;
    }
    return true;
}

/* ---- completions ------------------------------------------------------------------------- */

static void give_back(struct worker *w, uint32_t bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * w->bufsz, w->bufsz, (unsigned short)bid,
                          io_uring_buf_ring_mask(w->nbufs), (int)w->br_added++);
}

static void on_recv(struct worker *w, struct sock *s, struct io_uring_cqe *cqe)
{
    bool last = !(cqe->flags & IORING_CQE_F_MORE);
    int res = cqe->res;

    if (last)
        s->recv = RECV_OFF;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        /* Handlers copy what they keep, so the buffer goes back at once. */
        if (res > 0 && !s->dead) {
            s->ops->on_data(s, w->bufs + (size_t)bid * w->bufsz, (uint32_t)res);
        }
        give_back(w, bid);
    }
    if (!sock_put(w, s, last))
        return;
    if (res == 0)
        s->ops->on_eof(s, 0);
    else if (res < 0 && res != -ENOBUFS && res != -ECANCELED)
        s->ops->on_eof(s, res);
    else if (last && s->want_recv && !s->dead)
        sock_recv_start(w, s); /* ended by ENOBUFS, cancel, or the kernel: re-arm */
}

static void on_send(struct worker *w, struct sock *s, int res)
{
    struct outq *q = &s->out;

    q->busy = false;
    if (!sock_put(w, s, true))
        return;
    if (res <= 0) {
        s->ops->on_eof(s, res ? res : -EPIPE);
        return;
    }
    buf_consume(&q->sending, (uint32_t)res);
    sock_flush(w, s);
    s->ops->on_sent(s);
}

static void arm_accept(struct worker *w, struct listener *l)
{
    struct io_uring_sqe *sqe = w_sqe(w);

    io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    sqe->user_data = ud_of(l, OP_ACCEPT);
    l->armed = true;
}

static void on_accept(struct worker *w, struct listener *l, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        l->armed = false;
    if (cqe->res >= 0) {
        ctr_add(&w->accepted, 1);
        /* also while draining (an accept that completed before the cancel): the client is
         * connected and is sending a request, which is answered with Connection: close.
         * Not on a listener a reload removed: its settings (PROXY protocol, TLS) may be gone
         * with the snapshot that had them. */
        if (l->closing)
            close_fd(w, cqe->res);
        else
            l->accepted(w, cqe->res, l);
    } else if (cqe->res != -ECANCELED) {
        log_warn("worker %d: accept failed: %s", w->id, strerror(-cqe->res));
    }
    if (!l->armed && !w->draining && l->fd >= 0)
        arm_accept(w, l);
    else if (!l->armed && l->closing)
        free(l); /* its last completion: a reload removed it */
}

static void on_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    void *p = (void *)(uintptr_t)(ud & ~OP_MASK);

    if (!(cqe->flags & IORING_CQE_F_MORE))
        w->ops--;
    switch ((enum op)(ud & OP_MASK)) {
    case OP_NONE:
        break;
    case OP_ACCEPT:
        on_accept(w, p, cqe);
        break;
    case OP_RECV:
        on_recv(w, p, cqe);
        break;
    case OP_SEND:
        on_send(w, p, cqe->res);
        break;
    case OP_SOCKET:
        if (sock_put(w, p, true))
            ((struct sock *)p)->ops->on_socket(p, cqe->res);
        else if (cqe->res >= 0)
            close_fd(w, cqe->res); /* the request went away while the socket was made */
        break;
    case OP_SHUTDOWN:
        ((struct sock *)p)->shutting = false;
        sock_put(w, p, true);
        break;
    case OP_WAKE: /* posted by another ring: this ring never counted it as its own op */
        w->ops++;
        ((struct wake *)p)->fn(w, p);
        break;
    case OP_FILE:
        ((struct file_op *)p)->done(w, p, cqe->res);
        break;
    case OP_CONNECT:
        ((struct sock *)p)->connecting = false;
        if (sock_put(w, p, true))
            ((struct sock *)p)->ops->on_connect(p, cqe->res);
        break;
    }
}

/* ---- listeners and snapshots ------------------------------------------------------------ */

static void listener_close(struct worker *w, struct listener *l);

/* The sockets of lsock ls that are this worker's: a traffic worker takes its own of every
 * traffic listener, the admin worker the admin listener's. */
static bool listener_is_mine(const struct worker *w, const struct lsock *ls)
{
    return ls->spec->admin == (w->id >= w->s->nworkers);
}

/* This worker's sockets of ls: entries slot, slot + n, ... of its fds, n the workers that
 * share it (inherited sockets may outnumber the workers: then one accepts on several).
 * Takes w->s->listen_mu around changes to w->ls (rp_server_listeners reads it). */
static int listener_add(struct worker *w, struct lsock *ls)
{
    uint32_t slot = ls->spec->admin ? 0 : (uint32_t)w->id;
    uint32_t step = ls->spec->admin ? 1 : (uint32_t)w->s->nworkers;
    int rc = 0;

    pthread_mutex_lock(&w->s->listen_mu);
    for (uint32_t i = slot; i < ls->nfds && !rc; i += step) {
        struct listener *l, **arr;
        if (ls->fds[i] < 0)
            continue;
        if (!(arr = realloc(w->ls, (w->n_ls + 1) * sizeof(*arr)))) {
            rc = -ENOMEM;
            break;
        }
        w->ls = arr;
        if (posix_memalign((void **)&l, 1 << OP_BITS, sizeof(*l))) {
            rc = -ENOMEM;
            break;
        }
        *l = (struct listener){.fd = ls->fds[i],
                               .tls = ls->spec->tls,
                               .admin = ls->spec->admin,
                               .accepted = session_accept,
                               .spec = ls->spec,
                               .lsock = ls};
        ls->fds[i] = -1; /* ours now: we close it */
        w->ls[w->n_ls++] = l;
        if (w->snap_armed)
            arm_accept(w, l);
    }
    pthread_mutex_unlock(&w->s->listen_mu);
    return rc;
}

static int listeners_init(struct worker *w)
{
    for (uint32_t i = 0; i < w->snap->n_ls; i++)
        if (listener_is_mine(w, w->snap->ls[i]) && listener_add(w, w->snap->ls[i]))
            return -ENOMEM;
    return 0;
}

static bool snap_has(const struct snapshot *snap, const struct lsock *ls)
{
    for (uint32_t i = 0; i < snap->n_ls; i++)
        if (snap->ls[i] == ls)
            return true;
    return false;
}

/* Listeners by difference: those the new snapshot dropped close, new ones start accepting,
 * kept ones are not touched. */
static void listeners_adopt(struct worker *w)
{
    uint32_t k = 0;

    pthread_mutex_lock(&w->s->listen_mu);
    for (uint32_t i = 0; i < w->n_ls; i++) {
        struct listener *l = w->ls[i];
        if (snap_has(w->snap, l->lsock)) {
            w->ls[k++] = l;
            continue;
        }
        l->closing = true;
        l->spec = NULL; /* its lsock may go with the old snapshot */
        l->lsock = NULL;
        listener_close(w, l);
        if (!l->armed)
            free(l);
    }
    w->n_ls = k;
    pthread_mutex_unlock(&w->s->listen_mu);
    for (uint32_t i = 0; i < w->snap->n_ls; i++) {
        struct lsock *ls = w->snap->ls[i];
        bool have = false;
        for (uint32_t j = 0; j < w->n_ls && !have; j++)
            have = w->ls[j]->lsock == ls;
        if (have || !listener_is_mine(w, ls))
            continue;
        if (listener_add(w, ls))
            log_error("worker %d: out of memory adding listener %s", w->id, ls->spec->addr);
    }
}

void worker_adopt(struct worker *w)
{
    struct snapshot *old = w->snap, *next;
    struct snap_hold *h;

    if (atomic_load_explicit(&w->s->gen, memory_order_acquire) == old->gen)
        return;
    next = snapshot_acquire(w->s);
    if (next == old) {
        snapshot_put(w->s, next);
        return;
    }
    if (w->snap_users) { /* requests started on it hold it until they end */
        if (!(h = realloc(w->held, (w->n_held + 1) * sizeof(*h)))) {
            snapshot_put(w->s, next); /* try again at the next pass */
            return;
        }
        w->held = h;
        w->held[w->n_held++] = (struct snap_hold){old, w->snap_users};
    }
    w->snap = next;
    w->snap_users = 0;
    listeners_adopt(w);
    for (const struct worker_module *const *m = w->s->modules; *m; m++)
        if ((*m)->adopt)
            (*m)->adopt(w, old);
    if (!(w->n_held && w->held[w->n_held - 1].snap == old))
        snapshot_put(w->s, old);
    log_debug("worker %d: generation %llu", w->id, (unsigned long long)next->gen);
}

void worker_snap_fini(struct worker *w)
{
    for (uint32_t i = 0; i < w->n_held; i++)
        snapshot_put(w->s, w->held[i].snap);
    free(w->held);
    w->held = NULL;
    w->n_held = 0;
    snapshot_put(w->s, w->snap);
    w->snap = NULL;
}

/* ---- drain ------------------------------------------------------------------------------- */

/* Stops accepting on l and closes its socket (the accept's last completion follows). */
static void listener_close(struct worker *w, struct listener *l)
{
    struct io_uring_sqe *sqe;

    if (l->fd < 0)
        return;
    if (l->armed) {
        sqe = w_sqe(w);
        io_uring_prep_cancel64(sqe, ud_of(l, OP_ACCEPT), 0);
        sqe->user_data = 0;
    }
    sqe = w_sqe(w);
    io_uring_prep_close(sqe, l->fd);
    sqe->user_data = 0;
    l->fd = -1;
}

static void start_drain(struct worker *w)
{
    w->draining = true;
    w->drain_deadline_ms = w->now_ms + w->snap->cfg.shutdown_timeout_ms;
    /* rp_server_listeners() may be duplicating these fds on another thread right now */
    pthread_mutex_lock(&w->s->listen_mu);
    for (uint32_t i = 0; i < w->n_ls; i++)
        listener_close(w, w->ls[i]);
    pthread_mutex_unlock(&w->s->listen_mu);
    for (const struct worker_module *const *m = w->s->modules; *m; m++)
        if ((*m)->drain)
            (*m)->drain(w);
}

static void force_close_all(struct worker *w)
{
    for (const struct worker_module *const *m = w->s->modules; *m; m++)
        if ((*m)->force)
            (*m)->force(w);
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Which operations this kernel's io_uring has: the engine needs the basic socket ops, and
 * makes sockets with IORING_OP_SOCKET when it can. */
static int probe_ops(struct worker *w)
{
    static const struct {
        int op;
        const char *name;
    } needed[] = {
        {IORING_OP_ACCEPT, "accept"},     {IORING_OP_RECV, "recv"},
        {IORING_OP_SEND, "send"},         {IORING_OP_CONNECT, "connect"},
        {IORING_OP_CLOSE, "close"},       {IORING_OP_ASYNC_CANCEL, "cancel"},
        {IORING_OP_SHUTDOWN, "shutdown"}, {IORING_OP_MSG_RING, "msg_ring"},
    };
    struct io_uring_probe *pr = io_uring_get_probe_ring(&w->ring);

    if (!pr) {
        log_error("cannot probe io_uring operations: kernel too old (need Linux 6.1+)");
        return -ENOSYS;
    }
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        if (!io_uring_opcode_supported(pr, needed[i].op)) {
            log_error("this kernel's io_uring lacks %s (need Linux 6.1+)", needed[i].name);
            io_uring_free_probe(pr);
            return -ENOSYS;
        }
    w->has_socket_op = io_uring_opcode_supported(pr, IORING_OP_SOCKET);
    io_uring_free_probe(pr);
    return 0;
}

static int setup_ring(struct worker *w)
{
    struct io_uring_params p;
    bool admin;
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int ret = -EINVAL;

    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i];
        p.cq_entries = RING_ENTRIES * 4;
        p.flags |= IORING_SETUP_CQSIZE;
        ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
        if (ret != -EINVAL)
            break;
    }
    if (ret)
        return ret;
    if ((ret = probe_ops(w))) {
        io_uring_queue_exit(&w->ring);
        return ret;
    }
    if (!(p.features & IORING_FEAT_EXT_ARG)) {
        log_error("this kernel's io_uring lacks IORING_FEAT_EXT_ARG (need Linux 5.11+)");
        io_uring_queue_exit(&w->ring);
        return -ENOSYS;
    }
    /* io_uring_enter then skips looking up the ring's file on every call (Linux 5.18+);
     * refused on older kernels, which is harmless */
    io_uring_register_ring_fd(&w->ring);
    /* the admin listener's worker reads a few small requests: 32 buffers, faulted on use */
    admin = w->id >= w->s->nworkers;
    w->nbufs = admin ? ADMIN_NBUFS : NBUFS;
    w->bufsz = BUFSZ;
    w->br_added = 0;
    /* The kernel cycles through every buffer, so all of them are touched within the first
     * few hundred receives: fault them in now (prefault), as the fixed per-worker cost they are. */
    ret = bufring_setup(&w->ring, w->nbufs, BUFSZ, BUF_GROUP, !admin, &w->br, &w->bufs);
    if (ret) {
        if (ret != -ENOMEM) /* out of memory is not a kernel too old */
            log_error("provided-buffer rings refused (%s): need Linux 5.19+", strerror(-ret));
        io_uring_queue_exit(&w->ring);
        return ret;
    }
    return 0;
}

static void teardown_ring(struct worker *w)
{
    bufring_free(&w->ring, w->br, BUF_GROUP, w->bufs);
    io_uring_queue_exit(&w->ring);
}

/* After a burst, glibc keeps the freed buffers' pages: hand them back once the worker has
 * been quiet for a moment, so memory follows the load down. Rare: at most once per burst. */
static void trim_when_quiet(struct worker *w, unsigned reaped)
{
    if (reaped) {
        w->last_busy_ms = w->now_ms;
        return;
    }
    if (w->frees_since_trim > 256 && w->now_ms - w->last_busy_ms > 200) {
        malloc_trim(0);
        w->frees_since_trim = 0;
    }
}

static unsigned reap(struct worker *w)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        on_cqe(w, cqe);
        n++;
    }
    io_uring_cq_advance(&w->ring, n);
    if (w->br_added) {
        io_uring_buf_ring_advance(w->br, (int)w->br_added);
        w->br_added = 0;
    }
    return n;
}

static bool worker_done(struct worker *w)
{
    if (!w->draining)
        return false;
    if (!w->nconns && !w->ops)
        return true;
    return w->now_ms > w->drain_deadline_ms + 2000; /* completions that never come */
}

static void run_loop(struct worker *w)
{
    bool forced = false;

    while (!worker_done(w)) {
        struct io_uring_cqe *cqe;
        uint64_t wait = timer_next_ms(w->tw, w->now_ms, 100);
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = (long long)wait * 1000000};
        int ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);

        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
            log_warn("worker %d: io_uring_submit_and_wait: %s", w->id, strerror(-ret));
        w->now_ms = mono_ms();
        trim_when_quiet(w, reap(w));
        timer_run(w->tw, w->now_ms);
        for (const struct worker_module *const *m = w->s->modules; *m; m++)
            if ((*m)->tick)
                (*m)->tick(w);
        bury_all(w);
        if (!w->draining)
            worker_adopt(w);
        if (!w->draining && atomic_load(&w->s->stopping))
            start_drain(w);
        if (w->draining && !forced && w->now_ms > w->drain_deadline_ms) {
            log_warn("worker %d: drain timed out, closing %u connections", w->id, w->nconns);
            force_close_all(w);
            bury_all(w);
            forced = true;
        }
    }
    io_uring_submit(&w->ring);
}

static int worker_init(struct worker *w)
{
    int ret;

    w->snap = snapshot_acquire(w->s);
    /* a reload may bring TLS where there was none: the buffer is there from the start */
    if (!(w->plain = malloc(TLS_PLAIN_CAP)))
        return -ENOMEM;
    w->tw = malloc(sizeof(*w->tw));
    if (!w->tw)
        return -ENOMEM;
    if ((ret = listeners_init(w)))
        return ret;
    for (const struct worker_module *const *m = w->s->modules; *m; m++)
        if ((*m)->init && (ret = (*m)->init(w)))
            return ret;
    ret = bal_worker_init(&w->bal, &w->snap->rt, w->s->t_slots.cap, (uint64_t)w->id + 1);
    if (ret)
        return ret;
    return setup_ring(w);
}

static void worker_fini(struct worker *w)
{
    if (w->br)
        teardown_ring(w);
    w->br = NULL;
    for (const struct worker_module *const *m = w->s->modules; *m; m++)
        if ((*m)->fini)
            (*m)->fini(w);
    tls_thread_exit();
    pthread_mutex_lock(&w->s->listen_mu);
    for (uint32_t i = 0; i < w->n_ls; i++) { /* a worker that never ran still has them */
        if (w->ls[i]->fd >= 0)
            close(w->ls[i]->fd);
        free(w->ls[i]);
    }
    free(w->ls);
    w->ls = NULL;
    w->n_ls = 0;
    pthread_mutex_unlock(&w->s->listen_mu);
    worker_snap_fini(w);
    free(w->plain);
    w->plain = NULL;
    buf_free(&w->scratch);
    buf_free(&w->h2out);
    buf_free(&w->synth);
    buf_free(&w->dechunk);
    bal_worker_fini(&w->bal);
    free(w->tw);
    w->tw = NULL;
}

static void gate_report(struct start_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->reported++;
    pthread_cond_broadcast(&g->cv);
    while (!g->go)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* The ring is created here because SINGLE_ISSUER binds it to the thread that creates it. */
__thread struct worker *worker_self;

/* The admin listener's worker yields to traffic: SCHED_BATCH (its wake-ups never preempt a
 * running traffic worker) at nice 19, so a scrape that takes a millisecond of CPU waits for
 * a free moment instead of stalling requests on a shared core. It still runs under full
 * load (nice 19 is a small share, not none). Best effort: without the right, it runs as is. */
static void admin_yields(void)
{
    struct sched_param sp = {0};

    if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) ||
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19))
        log_debug("admin worker: cannot lower its priority: %s", strerror(errno));
}

void worker_run(struct worker *w, struct start_gate *g)
{
    int ret;

    worker_self = w;
    if (w->id >= w->s->nworkers)
        admin_yields();
    w->start_err = worker_init(w);
    gate_report(g);
    if (!w->start_err && !atomic_load(&w->s->stopping)) {
        w->now_ms = mono_ms();
        timer_wheel_init(w->tw, w->now_ms);
        for (uint32_t i = 0; i < w->n_ls; i++)
            arm_accept(w, w->ls[i]);
        w->snap_armed = true; /* listeners a reload adds are armed as they come */
        for (const struct worker_module *const *m = w->s->modules; *m; m++)
            if ((*m)->start && (ret = (*m)->start(w)))
                log_error("worker %d: cannot start %s: %s", w->id, (*m)->name, strerror(-ret));
        run_loop(w);
        log_info("worker %d: %llu connections, %llu requests, %llu errors, %llu failed TLS "
                 "handshakes or records, %llu tunnels (%llu bytes in, %llu out)",
                 w->id, (unsigned long long)w->accepted, (unsigned long long)w->requests,
                 (unsigned long long)w->errors, (unsigned long long)w->tls_failures,
                 (unsigned long long)w->tunnels, (unsigned long long)w->tunnel_bytes_in,
                 (unsigned long long)w->tunnel_bytes_out);
    }
    worker_fini(w);
}
