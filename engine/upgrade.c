/* upgrade.c: the listening sockets handed from a running daemon to its replacement
 * (upgrade.h): records and their fds on the Unix socket, the old process's socket and
 * thread, the new process's side (the message format is upgrade_msg.c's). Nothing here runs on a
 * worker: the old side's thread only reads the server's listener list (rp_server_listeners) and
 * asks it to drain (rp_server_shutdown). */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* ---- sending and receiving one message ----------------------------------------------- */

static void close_all(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* Sends *m with fds[0..nfds) attached. 0 or -errno. */
static int send_msg(int fd, const struct upg_msg *m, const int *fds, size_t nfds)
{
    union {
        char buf[CMSG_SPACE(UPG_BATCH * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    uint8_t buf[UPG_MSG_MAX];
    int n = upg_encode(m, buf, sizeof(buf));
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;

    if (n < 0)
        return n;
    if (nfds > UPG_BATCH)
        return -EINVAL;
    iov = (struct iovec){buf, (size_t)n};
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    while ((n = (int)sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return n < 0 ? -errno : 0;
}

/* Receives one message into *m and the fds that came with it into fds[0..UPG_BATCH) (their
 * number in *nfds; all closed on failure). -EPIPE when the peer closed; -EAGAIN on a
 * timeout (SO_RCVTIMEO); -EBADMSG for a record cut short or that does not decode. */
static int recv_msg(int fd, struct upg_msg *m, int *fds, size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(UPG_BATCH * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    uint8_t buf[UPG_MSG_MAX + 1];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n;
    int rc;

    *nfds = 0;
    while ((n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        size_t k;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (k > UPG_BATCH - *nfds) { /* cannot happen with ctl's size; never overrun fds */
            close_all(fds, *nfds);
            *nfds = 0;
            return -EBADMSG;
        }
        memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
        *nfds += k;
    }
    if (n == 0 && !*nfds)
        return -EPIPE;
    rc = mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC) ? -EBADMSG : upg_decode(buf, (size_t)n, m);
    if (!rc && *nfds != (m->type == UPG_LISTENERS ? m->n : 0))
        rc = -EBADMSG; /* every listener comes with its socket, and nothing else has one */
    if (rc) {
        close_all(fds, *nfds);
        *nfds = 0;
    }
    return rc;
}

static void set_timeouts(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* The peer's credentials; true when it runs as our uid or as root. */
static bool peer_ok(int fd, struct ucred *cr)
{
    socklen_t len = sizeof(*cr);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len))
        return false;
    return cr->uid == geteuid() || cr->uid == 0;
}

static void send_error(int fd, const char *why)
{
    struct upg_msg m = {.type = UPG_ERROR};

    snprintf(m.text, sizeof(m.text), "%s", why);
    send_msg(fd, &m, NULL, 0);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the running daemon's side ------------------------------------------------------- */

/* Waits up to ms for fd to be readable: 0, -ETIMEDOUT, or -ECANCELED when stopped. */
static int wait_readable(struct upg_server *u, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = u->stop[0], .events = POLLIN}};
    uint64_t end = mono_ms() + (uint64_t)ms;
    int n;

    for (;;) {
        uint64_t now = mono_ms();
        n = poll(p, 2, now >= end ? 0 : (int)(end - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[1].revents)
            return -ECANCELED;
        return n ? 0 : -ETIMEDOUT;
    }
}

/* Sends every listening socket of u->s, UPG_BATCH to a message. 0 or -errno (logged). */
static int send_listeners(struct upg_server *u, int fd, pid_t peer)
{
    rp_listener_fd *ls = NULL;
    int n, rc = 0;

    for (int tries = 0; !ls; tries++) { /* the list may grow between the two calls */
        n = rp_server_listeners(u->s, NULL, 0);
        if (n <= 0 || tries == 3)
            break;
        ls = calloc((size_t)n, sizeof(*ls));
        rc = ls ? rp_server_listeners(u->s, ls, (size_t)n) : -ENOMEM;
        if (rc >= 0 && rc <= n) {
            n = rc;
            rc = 0;
        } else {
            free(ls);
            ls = NULL;
            n = rc < 0 ? rc : -EAGAIN;
            if (rc < 0)
                break;
        }
    }
    rc = 0;
    if (n <= 0) {
        send_error(fd, n ? "cannot duplicate the listening sockets" : "not serving (draining?)");
        free(ls);
        return n ? n : -EAGAIN;
    }
    log_info("upgrade: pid %d asks for the listening sockets: sending %d", (int)peer, n);
    for (int first = 0; !rc && first < n; first += UPG_BATCH) {
        struct upg_msg m = {.type = UPG_LISTENERS, .total = (uint32_t)n, .first = (uint32_t)first};
        int fds[UPG_BATCH];
        m.n = (uint16_t)(n - first < UPG_BATCH ? n - first : UPG_BATCH);
        for (uint16_t i = 0; i < m.n; i++) {
            m.e[i].kind = (uint8_t)ls[first + i].kind;
            snprintf(m.e[i].addr, sizeof(m.e[i].addr), "%s", ls[first + i].addr);
            fds[i] = ls[first + i].fd;
        }
        rc = send_msg(fd, &m, fds, m.n);
    }
    for (int i = 0; i < n; i++)
        close(ls[i].fd); /* our duplicates: the workers keep theirs */
    free(ls);
    if (rc)
        log_warn("upgrade: sending the listening sockets to pid %d: %s", (int)peer, strerror(-rc));
    return rc;
}

/* Waits for the new process to serve, then drains for it. True once handed over. */
static bool await_drain(struct upg_server *u, int fd, pid_t peer)
{
    struct upg_msg m = {.type = UPG_DRAIN_OK};
    int fds[UPG_BATCH];
    size_t nfds;
    int rc = wait_readable(u, fd, UPG_READY_TIMEOUT_MS);

    if (rc == -ECANCELED) {
        send_error(fd, "the old process is exiting");
        return false;
    }
    if (!rc)
        rc = recv_msg(fd, &m, fds, &nfds);
    if (!rc && m.type != UPG_DRAIN)
        rc = -EBADMSG;
    if (rc) {
        log_warn("upgrade: pid %d %s: still serving", (int)peer,
                 rc == -ETIMEDOUT ? "did not start serving in time"
                 : rc == -EPIPE   ? "went away before it served"
                                  : "sent something other than DRAIN");
        return false;
    }
    /* answer first: a DRAIN_OK that cannot be sent leaves nobody to serve if we drain */
    m = (struct upg_msg){.type = UPG_DRAIN_OK};
    if (send_msg(fd, &m, NULL, 0)) {
        log_warn("upgrade: pid %d went away before it heard DRAIN_OK: still serving", (int)peer);
        return false;
    }
    atomic_store(&u->handed_over, true);
    log_info("upgrade: pid %d serves on our listening sockets: draining", (int)peer);
    rp_server_shutdown(u->s);
    return true;
}

/* One request on connection fd. True once handed over (the thread stops serving). */
static bool serve_one(struct upg_server *u, int fd)
{
    struct upg_msg m;
    struct ucred cr = {0};
    int fds[UPG_BATCH];
    size_t nfds;
    int rc;

    if (!peer_ok(fd, &cr)) {
        log_warn("upgrade socket %s: refused a peer of uid %u (pid %d)", u->path, (unsigned)cr.uid,
                 (int)cr.pid);
        return false;
    }
    set_timeouts(fd, UPG_IO_TIMEOUT_MS);
    rc = wait_readable(u, fd, UPG_IO_TIMEOUT_MS);
    if (!rc)
        rc = recv_msg(fd, &m, fds, &nfds);
    if (rc == -EPROTONOSUPPORT)
        send_error(fd, "unsupported protocol version (this ringproxy speaks version 1)");
    else if (!rc && m.type != UPG_GET_LISTENERS)
        send_error(fd, "expected GET_LISTENERS");
    if (rc || m.type != UPG_GET_LISTENERS || atomic_load(&u->handed_over))
        return false;
    if (send_listeners(u, fd, cr.pid))
        return false;
    return await_drain(u, fd, cr.pid);
}

static void *server_main(void *p)
{
    struct upg_server *u = p;

    for (;;) {
        struct pollfd pf[2] = {{.fd = u->lfd, .events = POLLIN},
                               {.fd = u->stop[0], .events = POLLIN}};
        int c;
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("upgrade socket %s: poll: %s", u->path, strerror(errno));
            break;
        }
        if (pf[1].revents)
            break;
        c = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        bool done = serve_one(u, c);
        close(c);
        if (done)
            break; /* the socket path is the new process's now */
    }
    return NULL;
}

static int bind_socket(struct upg_server *u, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof(sa.sun_path)];
    struct stat st;
    int n = snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid()), rc = 0;

    if (n < 0 || (size_t)n >= sizeof(tmp) || strlen(path) >= sizeof(u->path))
        return -ENAMETOOLONG;
    snprintf(u->path, sizeof(u->path), "%s", path);
    memcpy(sa.sun_path, tmp, (size_t)n + 1);
    u->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (u->lfd < 0)
        return -errno;
    unlink(tmp); /* a leftover of a process that had our pid */
    /* no peer can connect before listen(), and by then the file is 0600 */
    if (bind(u->lfd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(tmp, 0600) || listen(u->lfd, 4) ||
        stat(tmp, &st) || rename(tmp, path))
        rc = -errno;
    if (rc) {
        unlink(tmp);
        close(u->lfd);
        u->lfd = -1;
        return rc;
    }
    u->dev = st.st_dev;
    u->ino = st.st_ino;
    return 0;
}

int upg_server_start(struct upg_server *u, const char *path, rp_server *s)
{
    sigset_t all, old;
    int rc;

    memset(u, 0, sizeof(*u));
    u->s = s;
    u->lfd = u->stop[0] = u->stop[1] = -1;
    atomic_init(&u->handed_over, false);
    rc = bind_socket(u, path);
    if (!rc && pipe2(u->stop, O_CLOEXEC))
        rc = -errno;
    if (!rc) { /* signals go to the main thread and the workers, never to this one */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = -pthread_create(&u->thread, NULL, server_main, u);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        u->running = !rc;
    }
    if (rc) {
        log_error("upgrade socket %s: %s (`ringproxy --upgrade` will not find this process)", path,
                  strerror(-rc));
        upg_server_stop(u);
        return rc;
    }
    return 0;
}

bool upg_server_handed_over(struct upg_server *u)
{
    return atomic_load(&u->handed_over);
}

void upg_server_stop(struct upg_server *u)
{
    struct stat st;

    if (!u->s) /* never started */
        return;
    if (u->running && write(u->stop[1], "x", 1) == 1)
        pthread_join(u->thread, NULL);
    u->running = false;
    if (u->lfd >= 0) {
        close(u->lfd);
        if (!atomic_load(&u->handed_over) && !stat(u->path, &st) && st.st_dev == u->dev &&
            st.st_ino == u->ino)
            unlink(u->path);
    }
    for (int i = 0; i < 2; i++)
        if (u->stop[i] >= 0)
            close(u->stop[i]);
    u->lfd = u->stop[0] = u->stop[1] = -1;
}

/* ---- the new process's side ---------------------------------------------------------- */

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static int connect_old(struct upg_client *c, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ucred cr = {0};

    if (strlen(path) >= sizeof(sa.sun_path))
        return errf(err, errlen, -ENAMETOOLONG, "%s: path too long", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return errf(err, errlen, -errno, "socket: %s", strerror(errno));
    set_timeouts(c->fd, UPG_IO_TIMEOUT_MS);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)))
        return errf(err, errlen, -errno,
                    "cannot connect to %s: %s (is a ringproxy with this pid_file running?)", path,
                    strerror(errno));
    if (!peer_ok(c->fd, &cr))
        return errf(err, errlen, -EPERM, "%s: its process runs as uid %u, not as us: refused", path,
                    (unsigned)cr.uid);
    c->peer = cr.pid;
    return 0;
}

/* Hands the sockets of one LISTENERS message to s; closes what it does not take. */
static int inherit_batch(struct upg_client *c, rp_server *s, const struct upg_msg *m,
                         const int *fds, char *err, size_t errlen)
{
    for (uint16_t i = 0; i < m->n; i++) {
        int rc = rp_server_inherit_listener(s, m->e[i].addr, fds[i]);
        if (rc == -ENOENT) {
            close(fds[i]);
            c->dropped++;
            continue;
        }
        if (rc) {
            close_all(fds + i, m->n - i);
            return errf(err, errlen, rc, "pid %d's socket for %s: %s", (int)c->peer, m->e[i].addr,
                        strerror(-rc));
        }
        c->inherited++;
    }
    return 0;
}

int upg_client_take(struct upg_client *c, const char *path, rp_server *s, char *err, size_t errlen)
{
    struct upg_msg m = {.type = UPG_GET_LISTENERS, .pid = (uint32_t)getpid()};
    uint32_t got = 0, total = 0;
    int fds[UPG_BATCH];
    size_t nfds;
    int rc;

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->started_ms = mono_ms();
    if ((rc = connect_old(c, path, err, errlen)))
        return rc;
    if ((rc = send_msg(c->fd, &m, NULL, 0)))
        return errf(err, errlen, rc, "%s: %s", path, strerror(-rc));
    do {
        rc = recv_msg(c->fd, &m, fds, &nfds);
        if (rc)
            return errf(err, errlen, rc, "pid %d: %s", (int)c->peer,
                        rc == -EAGAIN ? "no answer in time" : strerror(-rc));
        if (m.type == UPG_ERROR)
            return errf(err, errlen, -EREMOTEIO, "pid %d refused: %s", (int)c->peer, m.text);
        if (m.type != UPG_LISTENERS || m.first != got || (got && m.total != total) || !m.total)
            return errf(err, errlen, -EBADMSG, "pid %d: an unexpected message", (int)c->peer);
        total = m.total;
        if ((rc = inherit_batch(c, s, &m, fds, err, errlen)))
            return rc;
        got += m.n;
    } while (got < total);
    log_info("upgrade: took %u listening sockets from pid %d in %llu ms%s", c->inherited,
             (int)c->peer, (unsigned long long)(mono_ms() - c->started_ms),
             c->dropped ? "; closed those of addresses no longer configured" : "");
    return 0;
}

/* Whether pid is gone, or goes within ms (an old process whose own drain just ended). */
static bool exits_within(pid_t pid, int ms)
{
    for (int t = 0; t <= ms; t += 50) {
        if (kill(pid, 0) && errno == ESRCH)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

int upg_client_drain(struct upg_client *c, char *err, size_t errlen)
{
    struct upg_msg m = {.type = UPG_DRAIN};
    int fds[UPG_BATCH];
    size_t nfds;
    int rc = send_msg(c->fd, &m, NULL, 0);

    if (!rc)
        rc = recv_msg(c->fd, &m, fds, &nfds);
    if (!rc && m.type != UPG_DRAIN_OK)
        rc = -EREMOTEIO;
    if (!rc) {
        log_info("upgrade: pid %d drains; serving in its place %llu ms after asking", (int)c->peer,
                 (unsigned long long)(mono_ms() - c->started_ms));
        return 0;
    }
    if (exits_within(c->peer, 1000)) {
        log_warn("upgrade: pid %d exited on its own: serving in its place", (int)c->peer);
        return 0;
    }
    return errf(err, errlen, rc, "pid %d did not agree to drain (%s): it goes on serving",
                (int)c->peer, m.type == UPG_ERROR ? m.text : strerror(-rc));
}

void upg_client_close(struct upg_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}
