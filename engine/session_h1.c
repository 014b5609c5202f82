/* session_h1.c: the HTTP/1.1 client-side session. Owns the client connection: accept, the TLS
 * feed, keep-alive and pipelining, the head deadline, incremental head parsing, the client's
 * timers, and the HTTP/1.1 response writer (status line, framing, Connection) that exchanges
 * write their answers through. It turns bytes into exchanges (exchange.c) and never decides
 * routing, caching or retries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../tls/tls.h"
#include "internal.h"
#include "log.h"
#include "proxy_proto.h"

#define LINGER_MS 2000

static void conn_timeout(struct timer *t, uint64_t now);

/* ---- lifetime ---------------------------------------------------------------------------- */

void conn_close(struct conn *c)
{
    if (c->h2s) {
        h2s_close(c);
        return;
    }
    ex_abort(c);
    if (c->h2)
        h2_abort_streams(c);
    sock_kill(c->w, &c->sk);
}

void conn_release(struct conn *c)
{
    struct worker *w = c->w;

    list_del(&c->link);
    w->nconns--;
    h2_session_free(c);
    tls_conn_free(c->tls);
    slab_free(&w->conn_slab, c);
}

/* TLS: ciphertext received is decrypted into the worker's plaintext buffer and handled as
 * if it had arrived in the clear; the handshake's replies go out through the sink. */
static void conn_on_tls_data(struct conn *c, const char *p, uint32_t n)
{
    struct worker *w = c->w;
    bool fresh = !tls_handshake_done(c->tls);
    ssize_t k = tls_recv(c->tls, p, n, w->plain, TLS_PLAIN_CAP);

    if (fresh && tls_handshake_done(c->tls)) {
        const char *alpn = tls_alpn(c->tls);
        ctr_add(&w->tls_handshakes, 1);
        if (alpn && alpn[0] == 'h' && alpn[1] == '2' && !h2_session_start(c, NULL, 0))
            return;
    }
    while (k > 0) {
        conn_on_data(c, w->plain, (uint32_t)k);
        if (c->sk.dead)
            return;
        k = tls_recv(c->tls, NULL, 0, w->plain, TLS_PLAIN_CAP);
    }
    if (k == -ECONNRESET) { /* close_notify: an orderly end of the client's side */
        conn_on_eof(c, 0);
        return;
    }
    if (k < 0) {
        ctr_add(&w->tls_failures, 1);
        log_debug("TLS connection failed: %s", tls_error(c->tls));
        conn_close(c);
        return;
    }
    conn_flush_out(c);
}

static int tls_to_client(void *arg, const char *p, size_t n)
{
    struct conn *c = arg;

    return sock_queue(&c->sk, p, (uint32_t)n);
}

/* The client's byte stream, decrypted first on TLS. */
static void conn_on_stream(struct conn *c, char *p, uint32_t n)
{
    if (c->tls)
        conn_on_tls_data(c, p, n);
    else
        conn_on_data(c, p, n);
}

/* A PROXY protocol listener's connection: its header comes first, before the TLS handshake
 * on a TLS listener, usually whole in the first receive (a split one waits in sk.in). The
 * address it names replaces the peer's; the bytes after it begin the stream. */
static void conn_on_proxy_header(struct conn *c, char *p, uint32_t n)
{
    struct buf *in = &c->sk.in, held = {0};
    struct sockaddr_in6 src;
    char *h = p;
    uint32_t hn = n;
    int rc;

    if (buf_used(in)) {
        if (buf_append(in, p, n)) {
            conn_close(c);
            return;
        }
        h = buf_data(in);
        hn = buf_used(in);
    }
    rc = pp_parse(h, hn, &src);
    if (rc == -EAGAIN) {
        if (h == p && buf_append(in, p, n))
            conn_close(c);
        return;
    }
    if (rc < 0) {
        ctr_add(&c->w->pp_malformed, 1);
        log_debug("PROXY protocol: malformed header, connection closed");
        conn_close(c);
        return;
    }
    c->pp_pending = false;
    if (src.sin6_family != AF_UNSPEC)
        c->peer = src;
    if (h != p) { /* the stream starts with sk.in empty, as on any connection */
        held = *in;
        *in = (struct buf){0};
    }
    if ((uint32_t)rc < hn)
        conn_on_stream(c, h + rc, hn - (uint32_t)rc);
    buf_free(&held);
}

static void c_on_data(struct sock *s, char *p, uint32_t n)
{
    struct conn *c = (struct conn *)s;

    if (c->pp_pending)
        conn_on_proxy_header(c, p, n);
    else
        conn_on_stream(c, p, n);
}

static void c_on_eof(struct sock *s, int err)
{
    conn_on_eof((struct conn *)s, err);
}

static void c_on_sent(struct sock *s)
{
    conn_on_sent((struct conn *)s);
}

static void c_release(struct sock *s)
{
    conn_release((struct conn *)s);
}

static const struct sock_ops conn_ops = {
    .on_data = c_on_data,
    .on_eof = c_on_eof,
    .on_sent = c_on_sent,
    .release = c_release,
};

/* A client connection on fd, listed but not reading yet; NULL (fd closed, counted) when out
 * of memory. */
static struct conn *conn_new(struct worker *w, int fd, bool tls, bool admin)
{
    struct conn *c = slab_alloc(&w->conn_slab);
    socklen_t len = sizeof(c->peer);

    if (!c) {
        struct io_uring_sqe *sqe = w_sqe(w);
        io_uring_prep_close(sqe, fd);
        sqe->user_data = 0;
        ctr_add(&w->errors, 1);
        return NULL;
    }
    sock_init(&c->sk, fd, &conn_ops);
    if (tls && !(c->tls = tls_conn_new(w->snap->tls, NULL, tls_to_client, c))) {
        struct io_uring_sqe *sqe = w_sqe(w);
        io_uring_prep_close(sqe, fd);
        sqe->user_data = 0;
        slab_free(&w->conn_slab, c);
        ctr_add(&w->errors, 1);
        return NULL;
    }
    c->w = w;
    c->admin = admin;
    c->h2c_ok = !tls && !admin && w->snap->cfg.h2c;
    c->ex = &w->no_ex;
    c->sk.tm.fn = conn_timeout;
    /* multishot accept cannot return addresses; the client's address is needed for
     * X-Forwarded-For and ip_hash, so ask once per connection (never blocks) */
    if (getpeername(fd, (struct sockaddr *)&c->peer, &len))
        c->peer.sin6_family = AF_UNSPEC;
    list_add(&w->conns, &c->link);
    w->nconns++;
    return c;
}

static void conn_start(struct conn *c)
{
    c->head_start_ms = c->w->now_ms; /* the first head (or PROXY header) is due
                                        header_timeout after accept */
    sock_recv_start(c->w, &c->sk);
    conn_update_timer(c);
}

void conn_accepted(struct worker *w, int fd, bool tls, bool admin)
{
    struct conn *c = conn_new(w, fd, tls, admin);

    if (c)
        conn_start(c);
}

/* ---- writing to the client --------------------------------------------------------------- */

/* Queues bytes for the client (encrypted first on TLS); the event handler flushes once at
 * its end. */
void conn_queue_bytes(struct conn *c, const void *p, uint32_t n)
{
    if (c->h2s) {
        h2s_queue(c, p, n);
        return;
    }
    if (c->tls ? tls_send(c->tls, p, n) < 0 : sock_queue(&c->sk, p, n) < 0)
        conn_close(c);
}

void conn_flush_out(struct conn *c)
{
    if (c->h2s)
        h2s_flush(c);
    else if (!c->sk.dead)
        sock_flush(c->w, &c->sk);
}

void conn_send_continue(struct conn *c, const struct h1_request *r)
{
    /* We ask for the body ourselves rather than forward Expect: the backend may be an
     * HTTP/1.0 server that never answers 100, and the client would stall. */
    if (r->expect_continue && r->minor == 1 && r->body != H1_BODY_NONE && !buf_used(&c->sk.in)) {
        bool ok = true;
        buf_put(conn_head_buf(c), &ok, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_head_done(c, ok);
        conn_flush_out(c);
    }
}

/* Content-Length is always ours: one field with the parsed value (RFC 9110 section 8.6:
 * "5, 5" or two equal fields must not be passed on as they came), none when re-framing. */
static bool resp_skip_header(const struct h1_header *h)
{
    return h->hop || h->kind == H1_H_CONTENT_LENGTH;
}

/* Where a head is composed: straight into the output in the clear; on TLS into the worker's
 * scratch buffer, which conn_head_done() then encrypts into the output. */
struct buf *conn_head_buf(struct conn *c)
{
    return c->tls || c->h2s ? &c->w->scratch : &c->sk.out.pending;
}

void conn_head_done(struct conn *c, bool ok)
{
    struct buf *b = &c->w->scratch;

    if (c->h2s) {
        h2s_head_done(c, ok);
        return;
    }
    if (ok && c->tls)
        conn_queue_bytes(c, buf_data(b), buf_used(b));
    if (c->tls)
        b->off = b->len = 0;
    if (!ok)
        conn_close(c);
}

void conn_write_response_head(struct conn *c, const struct h1_response *r,
                              const struct rp_hook_ctx *hk)
{
    struct exchange *ex = c->ex;
    struct buf *b = conn_head_buf(c);
    bool ok = true;

    buf_put(b, &ok, "HTTP/1.1 ", 9);
    buf_put_status(b, &ok, r->status);
    buf_put(b, &ok, " ", 1);
    if (r->reason_len)
        buf_put(b, &ok, r->reason, r->reason_len);
    else
        buf_put_str(b, &ok, h1_reason(r->status));
    buf_put(b, &ok, "\r\n", 2);
    for (uint32_t i = 0; i < r->n_headers; i++)
        if (!resp_skip_header(&r->headers[i]))
            buf_put_header(b, &ok, &r->headers[i]);
    if (r->has_length && r->status != 204) { /* 204 must not have one (RFC 9110 8.6) */
        buf_put(b, &ok, "Content-Length: ", 16);
        buf_put_u64(b, &ok, r->content_length);
        buf_put(b, &ok, "\r\n", 2);
    }
    if (ex->resp_body == H1_BODY_CHUNKED && !ex->resp_dechunk)
        buf_put_str(b, &ok, "Transfer-Encoding: chunked\r\n");
    if (ex->close_client)
        buf_put_str(b, &ok, "Connection: close\r\n");
    else if (ex->client_minor == 0)
        buf_put_str(b, &ok, "Connection: keep-alive\r\n");
    if (ex->pc)
        pc_store_begin(c, r, hk, b, &ok);
    buf_put(b, &ok, "\r\n", 2);
    conn_head_done(c, ok); /* sent with the body that follows: ex_response_data flushes */
}

void conn_write_interim(struct conn *c, const struct h1_response *r)
{
    struct buf *b = conn_head_buf(c);
    char line[64];
    bool ok = true;

    if (c->ex->client_minor == 0)
        return; /* HTTP/1.0 clients do not expect 1xx */
    snprintf(line, sizeof(line), "HTTP/1.1 %03u %s\r\n", r->status, h1_reason(r->status));
    buf_put_str(b, &ok, line);
    for (uint32_t i = 0; i < r->n_headers; i++)
        if (!r->headers[i].hop)
            buf_put_header(b, &ok, &r->headers[i]);
    buf_put(b, &ok, "\r\n", 2);
    conn_head_done(c, ok);
    conn_flush_out(c);
}

void conn_exchange_done(struct conn *c, bool close, bool unread)
{
    if (c->h2s) {
        h2s_exchange_done(c);
        return;
    }
    if (unread) /* the rest of the request body is discarded until the client closes */
        c->linger = true;
    if (close || unread)
        c->close_after = true;
    if (c->close_after) {
        conn_on_sent(c);
        return;
    }
    conn_resume_input(c);
}

void conn_resume_input(struct conn *c)
{
    if (c->h2s) {
        h2s_resume_input(c);
        return;
    }
    if (c->recv_paused) {
        c->recv_paused = false;
        sock_recv_start(c->w, &c->sk);
    }
    conn_process(c);
}

/* ---- client events ----------------------------------------------------------------------- */

/* Whether p[0..n) may hold the empty line that ends a head, looking only past `from` (the
 * bytes before were searched when they arrived): a head trickled in small segments is then
 * parsed once, not once per segment (picohttpparser's last_len). It only says when a parse
 * is worth it; the parser decides, so a false alarm (leading empty lines) costs one parse. */
static bool head_may_end(const char *p, uint32_t n, uint32_t from)
{
    const char *q = p + (from > 2 ? from - 2 : 0), *end = p + n;

    while (q < end && (q = memchr(q, '\n', (size_t)(end - q)))) {
        if (q + 1 < end && (q[1] == '\n' || (q[1] == '\r' && q + 2 < end && q[2] == '\n')))
            return true;
        q++;
    }
    return false;
}

/* Parses a request head from p[0..n) and starts its exchange. `in_buf`: p is the start of
 * c->in, whose head bytes are consumed here (they stay readable until the next append).
 * Otherwise p is a receive buffer and the bytes after the head go to c->in first, so the
 * exchange finds any body there. Returns false when the head is incomplete. */
static bool conn_parse(struct conn *c, const char *p, uint32_t n, bool in_buf)
{
    struct worker *w = c->w;
    struct h1_header hdrs[H1_HEADERS_CAP];
    struct h1_request r = {.headers = hdrs, .headers_cap = H1_HEADERS_CAP};
    int status = 400;
    int rc;

    if (in_buf && n <= w->snap->lim.max_head_bytes && !head_may_end(p, n, c->head_scanned)) {
        c->head_scanned = n;
        return false;
    }
    rc = h1_parse_request(p, n, &r, &w->snap->lim, &status);
    if (rc == -EAGAIN) {
        c->head_scanned = in_buf ? n : 0;
        return false;
    }
    c->head_scanned = 0;
    if (rc < 0) {
        ctr_add(&w->errors, 1);
        respond_error(c, status);
        return true;
    }
    if (in_buf) {
        buf_consume(&c->sk.in, (uint32_t)rc);
    } else if ((uint32_t)rc < n && buf_append(&c->sk.in, p + rc, n - (uint32_t)rc)) {
        conn_close(c);
        return true;
    }
    ex_start(c, &r, p, (uint32_t)rc);
    return true;
}

void conn_process(struct conn *c)
{
    if (c->h2s) {
        h2s_process(c);
        return;
    }
    while (!c->sk.dead) {
        uint32_t before = buf_used(&c->sk.in);
        if (ex_active(c->ex)) {
            ex_feed_body(c);
            if (!ex_active(c->ex))
                continue; /* a local endpoint read its body and answered */
            if (c->ex->up && outq_bytes(&c->ex->up->sk.out) > WINDOW_BYTES && !c->recv_paused) {
                c->recv_paused = true;
                sock_recv_stop(c->w, &c->sk);
            }
            break;
        }
        if (c->close_after || c->linger || !before)
            break;
        if (c->nreq && outq_bytes(&c->sk.out) > WINDOW_BYTES)
            break; /* a pipelining client that does not read: wait for the send */
        if (!conn_parse(c, buf_data(&c->sk.in), before, true))
            break; /* incomplete head */
    }
    if (!c->sk.dead) {
        /* pipelined bytes waiting for the current exchange: bound them */
        if (ex_active(c->ex) && c->ex->req_done &&
            buf_used(&c->sk.in) > c->w->snap->lim.max_head_bytes && !c->recv_paused) {
            c->recv_paused = true;
            sock_recv_stop(c->w, &c->sk);
        }
        conn_update_timer(c);
    }
}

/* h2c: a plain connection's first bytes are the client preface (HTTP/2 with prior
 * knowledge), or an HTTP/1.1 request. Returns true when they were taken here: the
 * connection is HTTP/2 now, or the preface is not whole yet (kept in sk.in). */
static bool conn_h2c_preface(struct conn *c, const char *p, uint32_t n)
{
    struct buf *in = &c->sk.in;
    bool kept = buf_used(in) != 0;
    int m;

    if (kept) {
        if (buf_append(in, p, n)) {
            conn_close(c);
            return true;
        }
        p = buf_data(in);
        n = buf_used(in);
    }
    m = h2_preface_match(p, n);
    if (m < 0) { /* HTTP/1.1: what was kept is parsed as a head */
        c->h2c_ok = false;
        if (kept)
            conn_process(c);
        return kept;
    }
    if (m == 0) {
        if (!kept && buf_append(in, p, n))
            conn_close(c);
        return true;
    }
    if (kept) { /* the session reads from its own copy */
        struct buf held = *in;
        *in = (struct buf){0};
        h2_session_start(c, buf_data(&held), buf_used(&held));
        buf_free(&held);
    } else {
        h2_session_start(c, p, n);
    }
    return true;
}

void conn_on_data(struct conn *c, const char *p, uint32_t n)
{
    if (c->h2) {
        h2_on_data(c, p, n);
        return;
    }
    if (c->h2c_ok && !c->nreq && conn_h2c_preface(c, p, n))
        return;
    if (c->ex->state == EX_TUNNEL) {
        tunnel_client_data(c, p, n);
        return;
    }
    if (c->linger)
        return; /* discarding input until the peer closes */
    if (!ex_active(c->ex) && !buf_used(&c->sk.in) && !c->close_after) {
        c->head_start_ms = c->w->now_ms;
        /* the common case: a whole head in one receive, parsed where it landed */
        if (conn_parse(c, p, n, false)) {
            if (!c->sk.dead)
                conn_process(c);
            return;
        }
    }
    if (buf_append(&c->sk.in, p, n)) {
        conn_close(c);
        return;
    }
    conn_process(c);
    /* a head that can never complete within the limits is answered by the parser; this
     * only bounds input that arrives while an exchange holds the connection */
    if (!c->sk.dead && buf_used(&c->sk.in) > c->w->snap->lim.max_head_bytes + WINDOW_BYTES)
        conn_close(c);
}

void conn_on_eof(struct conn *c, int err)
{
    c->peer_eof = true;
    if (c->h2) { /* an HTTP/2 client's streams cannot outlive its side of the connection */
        conn_close(c);
        return;
    }
    if (c->ex->state == EX_TUNNEL) {
        tunnel_client_eof(c, err);
        return;
    }
    if (err || c->linger || !ex_active(c->ex) || !c->ex->req_done) {
        /* idle, aborted mid-request, or a reset: nothing more can be delivered */
        conn_close(c);
        return;
    }
    /* the client half-closed after a whole request: finish the response, then close */
    c->ex->close_client = true;
}

void conn_on_sent(struct conn *c)
{
    struct exchange *ex = c->ex;

    if (c->sk.dead)
        return;
    if (c->h2) { /* more frames, now that the socket took what was queued */
        h2_on_sent(c);
        if (c->sk.dead)
            return;
    }
    if (outq_bytes(&c->sk.out)) {
        conn_update_timer(c);
        return;
    }
    if (c->close_after && !ex_active(ex)) {
        if (c->tls && !c->tls_notified && !c->peer_eof) { /* close_notify goes first */
            c->tls_notified = true;
            tls_shutdown(c->tls);
            conn_flush_out(c);
            return;
        }
        if (c->linger && !c->peer_eof) {
            sock_shutdown_write(c->w, &c->sk);
            c->close_after = false;
            conn_update_timer(c);
        } else {
            conn_close(c);
        }
        return;
    }
    if (c->h2) {
        conn_update_timer(c);
        return;
    }
    ex_backend_resume(c); /* the client caught up: read the backend again */
    if (ex->state == EX_TUNNEL) {
        tunnel_sent(c);
        conn_update_timer(c); /* the write timeout gives way to the idle one */
        return;
    }
    if (!ex_active(ex) && !buf_used(&c->sk.out.sending) && !buf_used(&c->sk.out.pending))
        conn_process(c);
}

void conn_drain(struct conn *c)
{
    if (c->h2) {
        h2_drain(c);
        return;
    }
    /* A connection that has not sent its first request yet is not idle: its client has just
     * connected and is sending one. It is left to (within header_timeout), as nginx leaves
     * it; closing it would reset a client that did nothing wrong, and after an upgrade the
     * process that took the listeners over cannot answer it either. */
    if (!c->nreq && !ex_active(c->ex) && !outq_bytes(&c->sk.out))
        return;
    if (c->pp_pending || (!ex_active(c->ex) && !buf_used(&c->sk.in) && !outq_bytes(&c->sk.out))) {
        conn_close(c);
        return;
    }
    if (ex_active(c->ex))
        c->ex->close_client = true;
    else
        c->close_after = true;
}

/* ---- timers ------------------------------------------------------------------------------ */

/* A connection between requests holds no buffers: idle keep-alive connections cost only
 * their struct (glibc's per-thread cache makes the next small allocation cheap). Returns
 * the keep-alive timeout. */
static uint32_t conn_idle(struct conn *c)
{
    struct sock *sk = &c->sk;

    if (!sk->out.busy) {
        buf_free(&sk->in);
        buf_free(&sk->out.sending);
        buf_free(&sk->out.pending);
    }
    return c->w->snap->cfg.keepalive_timeout_ms;
}

/* One timer per connection, its deadline decided by where the exchange is: an output the
 * client does not take, a tunnel with no bytes, a body or head that stopped arriving, a wait
 * for a cache fill, or the keep-alive time. While a backend is at work its timers run. */
void conn_update_timer(struct conn *c)
{
    struct worker *w = c->w;
    const rp_server_config *cfg = &w->snap->cfg;
    struct exchange *ex = c->ex;
    uint64_t deadline = 0;

    if (c->sk.dead)
        return;
    if (c->h2) {
        h2_update_timer(c);
        return;
    }
    if (c->linger && !c->close_after && !outq_bytes(&c->sk.out))
        deadline = w->now_ms + LINGER_MS;
    else if (outq_bytes(&c->sk.out))
        deadline = w->now_ms + (ex->t    ? ex->t->write_timeout_ms
                                : c->h2s ? h2s_write_timeout_ms(c)
                                         : 10000);
    else
        switch ((enum ex_state)ex->state) {
        case EX_IDLE: /* a head arriving (or the first one, or a PROXY header, due), else
                         keep-alive */
            if (buf_used(&c->sk.in) || !c->nreq)
                deadline = c->head_start_ms + cfg->header_timeout_ms;
            else
                deadline = w->now_ms + conn_idle(c);
            break;
        case EX_TUNNEL: /* either side's bytes move it on */
            deadline = w->now_ms + cfg->tunnel_idle_timeout_ms;
            break;
        case EX_LOCAL:
        case EX_CACHE_WAIT:
        case EX_UPSTREAM:
        case EX_RESPONSE:
        case EX_DONE:
            if (!ex->req_done) /* the client's body */
                deadline = w->now_ms + (ex->t ? ex->t->read_timeout_ms : cfg->header_timeout_ms);
            else if (ex->state == EX_CACHE_WAIT)
                deadline = pc_wait_deadline(ex);
            break;
        }
    if (!deadline)
        timer_disarm(w->tw, &c->sk.tm);
    else if (!timer_armed(&c->sk.tm) || c->sk.tm.deadline_ms != deadline)
        timer_arm(w->tw, &c->sk.tm, deadline);
}

static void conn_timeout(struct timer *t, uint64_t now)
{
    struct conn *c = container_of(t, struct conn, sk.tm);
    struct exchange *ex = c->ex;
    bool stalled_out = outq_bytes(&c->sk.out) != 0; /* the client does not take its answer */

    (void)now;
    if (c->pp_pending) { /* no whole PROXY protocol header within header_timeout */
        ctr_add(&c->w->pp_timeouts, 1);
        conn_close(c);
        return;
    }
    if (ex->state == EX_TUNNEL) { /* idle for tunnel_idle_timeout, or a side stopped reading */
        conn_close(c);
        return;
    }
    if (c->tls && !tls_handshake_done(c->tls)) { /* a handshake that never finished */
        ctr_add(&c->w->tls_failures, 1);
        conn_close(c);
        return;
    }
    if (ex->state == EX_CACHE_WAIT && pc_wait_deadline(ex)) { /* waited long enough for a fill */
        pc_wait_expired(c);
        return;
    }
    if (!stalled_out && ex_active(ex) && !ex->req_done && !ex_resp_started(ex)) {
        respond_error(c, 408); /* the client stopped sending its body: in its exchange, so */
        ex_abort(c);           /* the answer counts in its domain and logs once */
        conn_update_timer(c);
        return;
    }
    if (!stalled_out && ex->state == EX_IDLE && buf_used(&c->sk.in) && !c->linger) {
        respond_error(c, 408); /* the head did not arrive in time */
        conn_update_timer(c);
        return;
    }
    conn_close(c);
}

/* ---- the worker's view ------------------------------------------------------------------- */

/* On a PROXY protocol listener, a peer not in proxy_protocol_from is closed at once; the
 * others are read for their header first. */
void session_accept(struct worker *w, int fd, const struct listener *l)
{
    const struct listen_spec *ls = l->spec;
    struct conn *c = conn_new(w, fd, l->tls, l->admin);

    if (!c)
        return;
    if (ls && ls->proxy_protocol) {
        if (!pp_cidr_match(ls->pp_from, ls->n_pp_from, &c->peer)) {
            /* AF_UNSPEC: reset before getpeername could name it, not a refusal */
            ctr_add(&w->pp_denied, c->peer.sin6_family != AF_UNSPEC);
            conn_close(c);
            return;
        }
        c->pp_pending = true;
    }
    conn_start(c);
}

static void sessions_drain(struct worker *w)
{
    for (struct list_node *n = w->conns.next, *next; n != &w->conns; n = next) {
        next = n->next; /* conn_drain may close it: it stays listed until released */
        conn_drain(container_of(n, struct conn, link));
    }
}

static void sessions_force(struct worker *w)
{
    for (struct list_node *n = w->conns.next, *next; n != &w->conns; n = next) {
        next = n->next;
        conn_close(container_of(n, struct conn, link));
    }
}

/* A reload: HTTP/2 connections get GOAWAY (their streams finish), so that clients come back
 * on a connection with the new settings and certificates; an HTTP/1.1 connection takes the
 * new configuration with its next request. */
static void sessions_adopt(struct worker *w, struct snapshot *old)
{
    (void)old;
    for (struct list_node *n = w->conns.next, *next; n != &w->conns; n = next) {
        struct conn *c = container_of(n, struct conn, link);
        next = n->next;
        if (c->h2)
            h2_drain(c);
    }
}

static int sessions_init(struct worker *w)
{
    list_init(&w->conns);
    list_init(&w->h2_dirty);
    slab_init(&w->conn_slab, sizeof(struct conn), 256);
    slab_init(&w->ex_slab, sizeof(struct exchange), 64);
    return 0;
}

static bool has_proxy_listener(const struct worker *w)
{
    for (uint32_t i = 0; w->ls && i < w->n_ls; i++)
        if (w->ls[i]->spec && w->ls[i]->spec->proxy_protocol)
            return true;
    return false;
}

static void sessions_fini(struct worker *w)
{
    if (!w->start_err && has_proxy_listener(w))
        log_info("worker %d: PROXY protocol: %llu connections refused from peers not in "
                 "proxy_protocol_from, %llu malformed headers, %llu without a header in time",
                 w->id, (unsigned long long)w->pp_denied, (unsigned long long)w->pp_malformed,
                 (unsigned long long)w->pp_timeouts);
    slab_fini(&w->conn_slab);
    slab_fini(&w->ex_slab);
}

const struct worker_module session_module = {
    .init = sessions_init,
    .drain = sessions_drain,
    .force = sessions_force,
    .tick = h2_tick,
    .fini = sessions_fini,
    .adopt = sessions_adopt,
    .name = "client sessions",
};
