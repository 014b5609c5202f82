/* upstream.c: connections to backends and their per-worker idle pools. A connection is
 * made with socket and connect SQEs, serves one user's request at a time (an exchange, a
 * health probe, a background refresh: each reports through its struct up_ops), and goes
 * back to its backend's pool (most recently used first) when the response ended cleanly.
 * It reads the response for its user: heads (interim ones too), the body's framing (length,
 * chunked, until close) and its end, or turns into a byte relay after a 101.
 * Pooled connections keep a receive armed, so a backend that closes one is noticed at once.
 * Connections of background users are listed too, so that a drain can end them.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../tls/tls.h"
#include "internal.h"
#include "log.h"
#include "proxy_proto.h"

static void up_timeout(struct timer *t, uint64_t now);
static const struct sock_ops up_ops;

void up_timer_fired(struct timer *t, uint64_t now)
{
    up_timeout(t, now);
}

/* An upconn is on one list at a time through `link`: its backend's idle pool (most recently
 * used first) while idle, or the worker's list of connections in use by background users
 * (nobody waits for those, so a draining worker ends them rather than wait). */
static bool is_background(const struct upconn *up)
{
    return up->state != US_IDLE && up->ops && up->ops->background;
}

static struct pool *pool_of(struct upconn *up)
{
    return &up->w->pools[up->be->index];
}

static void pool_remove(struct upconn *up)
{
    list_del(&up->link);
    pool_of(up)->n--;
}

#define PEAK_MS 10000 /* how long a peak of connections in use is remembered */

/* The connection is in use by a user (from up_get): counted in its pool, whose peak follows. */
static void pool_busy(struct upconn *up)
{
    struct pool *p = pool_of(up);

    up->busy = true;
    if (++p->busy >= p->peak) {
        p->peak = p->busy;
        p->peak_ms = up->w->now_ms;
    }
}

/* The connection's user is done with it (released, or closed). */
static void pool_unbusy(struct upconn *up)
{
    struct pool *p = pool_of(up);

    if (!up->busy)
        return;
    up->busy = false;
    p->busy--;
    if (up->w->now_ms - p->peak_ms > PEAK_MS) { /* an old peak: what is in use now */
        p->peak = p->busy;
        p->peak_ms = up->w->now_ms;
    }
}

/* Whether a released connection may wait in the pool: max_idle of them always (0: never),
 * and more while the recent peak of connections in use needs them back. */
static bool pool_has_room(const struct upconn *up)
{
    const struct pool *p = &up->w->pools[up->be->index];
    uint32_t max = (uint32_t)up->t->max_idle;

    return max && (p->n < max || p->n + p->busy + 1 <= p->peak);
}

static void pool_push(struct upconn *up)
{
    struct pool *p = pool_of(up);

    list_add(&p->idle, &up->link);
    p->n++;
}

void up_update_timer(struct upconn *up)
{
    struct worker *w = up->w;
    uint64_t deadline;

    if (up->sk.dead)
        return;
    switch (up->state) {
    case US_CONNECTING:
        deadline = up->connect_deadline_ms;
        break;
    case US_IDLE: /* set as it went to the pool, where it names no target */
        if (!up->t)
            return;
        deadline = w->now_ms + up->t->idle_timeout_ms;
        break;
    default:
        if (!up->t) /* an HTTP/2 connection between streams: it names no target */
            deadline = up->sk.out.busy ? w->now_ms + 10000 : 0;
        else if (up->sk.out.busy)
            deadline = w->now_ms + up->t->write_timeout_ms;
        else if (!up->sk.want_recv || !up->req_whole || up->read == UR_TUNNEL)
            deadline = 0; /* held back for a slow client, or waiting for the client's body:
                             the client's timer runs (a stalled body is the client's 408) */
        else
            deadline = w->now_ms + up->t->read_timeout_ms;
    }
    /* an attempt's try_timeout runs from its start until the first response byte */
    if (up->try_deadline_ms && !up->got_bytes && up->state != US_IDLE &&
        (!deadline || up->try_deadline_ms < deadline))
        deadline = up->try_deadline_ms;
    if (!deadline)
        timer_disarm(w->tw, &up->sk.tm);
    else if (!timer_armed(&up->sk.tm) || up->sk.tm.deadline_ms != deadline)
        timer_arm(w->tw, &up->sk.tm, deadline);
}

static struct upconn *up_from_pool(struct worker *w, struct backend *be)
{
    struct pool *p = &w->pools[be->index];
    struct upconn *up;

    if (list_empty(&p->idle))
        return NULL;
    up = container_of(p->idle.next, struct upconn, link);
    pool_remove(up);
    return up;
}

static struct upconn *up_connect(struct worker *w, struct target *t, struct backend *be)
{
    struct upconn *up = calloc(1, sizeof(*up));

    if (!up)
        return NULL;
    sock_init(&up->sk, -1, &up_ops);
    up->sk.tm.fn = up_timeout;
    up->w = w;
    up->be = be;
    up->t = t;
    up->state = US_CONNECTING;
    up->connect_deadline_ms = w->now_ms + t->connect_timeout_ms;
    return up;
}

static struct upconn *get_conn(struct worker *w, struct target *t, struct backend *be,
                               const struct up_ops *ops, void *user, bool fresh, bool transport)
{
    /* a connection that began with one client's PROXY header is that client's alone */
    struct upconn *up = fresh || t->send_pp || be->h2 ? NULL : up_from_pool(w, be);
    bool new_conn = !up;

    if (be->h2 && !transport) { /* a stream: up_start (h2u_start) finds it a connection */
        if (!(up = h2u_get(w, be)))
            return NULL;
        up->sk.tm.fn = up_timeout;
        up->state = US_CONNECTING;
        up->connect_deadline_ms = w->now_ms + t->connect_timeout_ms;
        up->reused = !fresh; /* (h2u_start says whether a connection was there) */
    } else if (up) {
        up->state = US_READY;
        up->reused = true;
    } else {
        up = up_connect(w, t, be);
        if (!up)
            return NULL;
    }
    up->t = t;
    up->ops = ops;
    up->user = user;
    if (ops->background)
        list_add(&w->background, &up->link);
    up->use++;
    if (!up->h2)
        pool_busy(up);
    up->got_bytes = false;
    up->reuse_ok = false;
    up->req_sent = false;
    up->read = UR_HEAD;
    up->method = H1_M_GET;
    up->decode = UP_RAW;
    up->skip_body = false;
    up->ck = (struct h1_chunked){0};
    up->try_deadline_ms = t->try_timeout_ms ? w->now_ms + t->try_timeout_ms : 0;
    up_update_timer(up);
    up->needs_socket = new_conn;
    up->fresh_h2 = fresh;
    return up;
}

struct upconn *up_get(struct worker *w, struct target *t, struct backend *be,
                      const struct up_ops *ops, void *user, bool fresh)
{
    return get_conn(w, t, be, ops, user, fresh, false);
}

struct upconn *up_get_transport(struct worker *w, struct target *t, struct backend *be,
                                const struct up_ops *ops, void *user)
{
    return get_conn(w, t, be, ops, user, true, true);
}

void up_start(struct upconn *up)
{
    if (!up->needs_socket)
        return;
    up->needs_socket = false;
    if (up->h2) {
        h2u_start(up, up->fresh_h2);
        return;
    }
    sock_open(up->w, &up->sk, up->be->sa.ss_family);
}

int up_proxy_header(struct upconn *up, const struct sockaddr_in6 *client)
{
    struct sockaddr_in6 none = {.sin6_family = AF_UNSPEC};
    char hdr[PP_WRITE_MAX];
    size_t n;

    if (!up->t->send_pp)
        return 0;
    /* the destination named is the backend's address: where this connection goes */
    n = pp_write(up->t->send_pp, client ? client : &none,
                 client ? (const struct sockaddr_in6 *)(const void *)&up->be->sa : &none, hdr);
    return sock_queue(&up->sk, hdr, (uint32_t)n); /* raw: before any TLS record */
}

void up_on_socket(struct upconn *up, int res)
{
    int one = 1;

    if (res < 0) {
        up->ops->failed(up, res, "cannot create a socket");
        return;
    }
    up->sk.fd = res;
    /* Request heads go out in one send; without this a second small send (body) can wait
     * for the delayed ACK of the first. setsockopt never blocks. */
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sock_connect(up->w, &up->sk, &up->be->sa, up->be->salen);
}

static int tls_to_backend(void *arg, const char *p, size_t n)
{
    struct upconn *up = arg;

    return sock_queue(&up->sk, p, (uint32_t)n);
}

int up_queue(struct upconn *up, const void *p, uint32_t n)
{
    if (up->h2 || !up->be->tls) /* (a stream's bytes go through its connection's TLS) */
        return sock_queue(&up->sk, p, n);
    if (up->tls && tls_handshake_done(up->tls))
        return tls_send(up->tls, p, n) < 0 ? -ENOMEM : 0;
    return buf_append(&up->tls_wait, p, n); /* sent once the handshake is done */
}

/* The name sent as SNI and verified: host_header without its port when set, else the
 * backend's DNS name (NULL for an IP literal: no SNI, the chain alone is verified). */
static const char *up_tls_name(const struct upconn *up, char *buf, size_t cap)
{
    const char *h = up->t->host_header;
    size_t n;

    if (!h)
        return up->be->sni;
    n = strcspn(h, ":");
    if (h[0] == '[' || n >= cap)
        return up->be->sni;
    memcpy(buf, h, n);
    buf[n] = 0;
    return buf;
}

/* https://: the handshake starts as soon as TCP is up. */
static int up_start_tls(struct upconn *up)
{
    char name[256];

    up->tls = (up->be->h2 ? tls_conn_new_h2 : tls_conn_new)(
        up->t->up_tls, up_tls_name(up, name, sizeof(name)), tls_to_backend, up);
    if (!up->tls)
        return -ENOMEM;
    return tls_connect(up->tls) < 0 ? -EPROTO : 0;
}

void up_on_connect(struct upconn *up, int res)
{
    if (res < 0) {
        up->ops->failed(up, res == -ECANCELED ? -ETIMEDOUT : res, "connect failed");
        return;
    }
    up->state = US_READY;
    if (up->be->tls && (res = up_start_tls(up))) {
        up->ops->failed(up, res, "TLS set-up failed");
        return;
    }
    sock_recv_start(up->w, &up->sk);
    sock_flush(up->w, &up->sk);
    up_update_timer(up);
    if (up->ops->ready)
        up->ops->ready(up);
}

/* ---- reading the response ------------------------------------------------------------------ */

#define UP_HEADERS_CAP 256 /* fields a response head may hold (the stack array's size) */

/* Whether the user of `up` at `use` still holds it after a callback. */
static bool up_held(const struct upconn *up, uint32_t use)
{
    return !up->sk.dead && up->ops && up->use == use;
}

void up_tunnel(struct upconn *up)
{
    up->read = UR_TUNNEL;
    up->reuse_ok = false;
}

void up_skip_body(struct upconn *up)
{
    up->skip_body = true;
}

/* Whether the chunked body bytes that came with a response head are well framed so far:
 * checked before the head is handed over, so a response that breaks at once fails cleanly. */
static bool chunks_ok(const char *p, uint32_t n)
{
    struct h1_chunked ck = {0};
    bool done = false;

    return !n || h1_chunked_feed(&ck, p, n, NULL, NULL, &done) >= 0;
}

/* The response ended with `extra` bytes after it in what is being read: ops->end, reusable
 * when the backend allows it and nothing is left over or still being sent. The last thing
 * the reader does with `up` (the user may pool it, and another user take it). */
static void resp_end(struct upconn *up, uint32_t extra)
{
    bool reusable = up->reuse_ok && !extra && !up->sk.out.busy;

    up->read = UR_HEAD;
    up->ended = true;
    up->ops->end(up, reusable);
}

/* The last body bytes b, with the trailer fields of the section at sec (ending with its
 * empty line, up->ck.trailer_bytes long) parsed into b->trailers. Returns whether the user
 * still holds `up`. */
static bool resp_body_trailers(struct upconn *up, struct up_body *b, const char *sec, uint32_t use)
{
    struct h1_header hdrs[UP_HEADERS_CAP];
    struct h1_response r = {.headers = hdrs, .headers_cap = UP_HEADERS_CAP};
    struct h1_limits lim = {UINT32_MAX, UP_HEADERS_CAP, 0};
    struct buf *head = &up->w->synth;
    bool ok = true;

    head->off = head->len = 0;
    buf_put(head, &ok, "HTTP/1.1 200 OK\r\n", 17);
    buf_put(head, &ok, sec, up->ck.trailer_bytes);
    if (ok && h1_parse_response(buf_data(head), buf_used(head), &r, &lim, H1_M_HEAD) > 0) {
        b->trailers = r.headers;
        b->n_trailers = r.n_headers;
    }
    if (b->raw_len || b->data_len || b->n_trailers)
        up->ops->body(up, b);
    return up_held(up, use);
}

/* Body bytes p[0..n) in the response's framing. Returns how many belonged to the response
 * (the rest is past its end; *done: it ended there), or -1 when the user no longer holds
 * `up` (it failed, or closed it). */
static int resp_body(struct upconn *up, char *p, uint32_t n, bool *done)
{
    struct up_body b = {.raw = p, .data = p, .raw_len = n, .data_len = n};
    uint32_t use = up->use;

    *done = false;
    if (up->body == H1_BODY_LENGTH) {
        if (n > up->left)
            n = (uint32_t)up->left;
        up->left -= n;
        b.raw_len = b.data_len = n;
        *done = !up->left;
    } else if (up->body == H1_BODY_CHUNKED) {
        char *out = up->decode == UP_DECODE ? p : NULL;
        size_t out_len = 0;
        ssize_t k;
        if (up->decode == UP_BOTH) {
            up->w->dechunk.off = up->w->dechunk.len = 0;
            if (!(out = buf_reserve(&up->w->dechunk, n ? n : 1))) {
                up->ops->failed(up, -ENOMEM, "out of memory");
                return -1;
            }
        }
        k = h1_chunked_feed(&up->ck, p, n, out, &out_len, done);
        if (k < 0) {
            up->ops->failed(up, -EBADMSG, "bad chunked response body");
            return -1;
        }
        n = (uint32_t)k;
        b.raw_len = up->decode == UP_DECODE ? 0 : n;
        b.data = out;
        b.data_len = out ? (uint32_t)out_len : 0;
        /* a trailer section (more than its empty line) whole in this receive: its fields,
         * for clients that take them apart (HTTP/2). Decoding in place leaves it be: the
         * data written never reaches past where it was read. */
        if (*done && up->ck.trailer_bytes > 2 && up->ck.trailer_bytes <= n && up->ops->body)
            return resp_body_trailers(up, &b, p + n - up->ck.trailer_bytes, use) ? (int)n : -1;
    } /* else until the backend closes: all of it */
    if ((b.raw_len || b.data_len) && up->ops->body) {
        up->ops->body(up, &b);
        if (!up_held(up, use))
            return -1;
    }
    return (int)n;
}

/* A final or interim head r parsed, `rest` the bytes after it so far. Returns false when the
 * user no longer holds `up` or the response ended (no byte after it is for anyone). */
static bool resp_head(struct upconn *up, const struct h1_response *r, char *rest, uint32_t n)
{
    uint32_t use = up->use;

    if (r->status >= 200 && r->body == H1_BODY_CHUNKED && !chunks_ok(rest, n)) {
        up->ops->failed(up, -EBADMSG, "bad chunked response body");
        return false;
    }
    if (r->status >= 200) {
        up->read = UR_BODY;
        up->body = r->body;
        up->left = r->content_length;
        up->reuse_ok = r->keep_alive;
    }
    up->ops->head(up, r);
    if (!up_held(up, use))
        return false;
    if (r->status == 101 && up->read != UR_TUNNEL) {
        up->ops->failed(up, -EPROTO, "101 Switching Protocols is not supported");
        return false;
    }
    if (up->read == UR_BODY && (up->skip_body || r->body == H1_BODY_NONE ||
                                (r->body == H1_BODY_LENGTH && !r->content_length))) {
        if (r->body != H1_BODY_NONE && !(r->body == H1_BODY_LENGTH && !r->content_length))
            up->reuse_ok = false; /* a body nobody reads: the connection cannot go on */
        resp_end(up, n);
        return false;
    }
    return true;
}

/* Whether an empty line ends a head within p[0..min(n, max)): tells a head too large from a
 * malformed one, once the parser refused it. */
static bool head_ends_within(const char *p, uint32_t n, uint32_t max)
{
    if (n > max)
        n = max;
    return memmem(p, n, "\n\r\n", 3) || memmem(p, n, "\n\n", 2);
}

/* Reads p[0..n): heads, then body bytes, or tunnel bytes. Returns how many it used while a
 * head is incomplete (the caller keeps the rest), or -1 when all were handled. */
static int resp_read(struct upconn *up, char *p, uint32_t n)
{
    const struct h1_limits *lim = &up->w->s->lim;
    struct h1_header hdrs[UP_HEADERS_CAP];
    uint32_t off = 0, use = up->use;
    bool done;
    int k;

    while (up->read == UR_HEAD) {
        struct h1_response r = {.headers = hdrs, .headers_cap = UP_HEADERS_CAP};
        int rc = h1_parse_response(p + off, n - off, &r, lim, (enum h1_method)up->method);
        if (rc == -EAGAIN)
            return (int)off; /* the parser bounds it: past max_head_bytes it fails */
        if (rc < 0) {
            if (!head_ends_within(p + off, n - off, lim->max_head_bytes))
                up->ops->failed(up, -E2BIG, "response head too large");
            else
                up->ops->failed(up, -EBADMSG, "malformed response head");
            return -1;
        }
        off += (uint32_t)rc;
        if (!resp_head(up, &r, p + off, n - off))
            return -1;
    }
    if (off == n)
        return -1;
    if (up->read == UR_TUNNEL) {
        up->ops->data(up, p + off, n - off);
        return -1;
    }
    if ((k = resp_body(up, p + off, n - off, &done)) < 0)
        return -1;
    if (done && up_held(up, use))
        resp_end(up, n - off - (uint32_t)k);
    return -1;
}

/* Bytes from the backend, decrypted on TLS. A partial head waits in sk.in; otherwise bytes
 * are read where they landed. */
static void up_plain_data(struct upconn *up, char *p, uint32_t n)
{
    struct buf *in = &up->sk.in;
    uint32_t use = up->use;
    int k;

    if (up->state != US_READY || !up->ops) {
        /* bytes on an idle connection answer nothing we asked: it cannot be reused */
        up_close(up);
        return;
    }
    up->got_bytes = true; /* before the timer: try_timeout stops at the first byte */
    up->ended = false;
    up_update_timer(up);
    if (!buf_used(in)) { /* the common case: nothing kept from an earlier receive */
        k = resp_read(up, p, n);
        if (k >= 0 && (uint32_t)k < n && buf_append(in, p + k, n - (uint32_t)k)) {
            up->ops->failed(up, -ENOMEM, "out of memory");
            return;
        }
    } else {
        if (buf_append(in, p, n)) {
            up->ops->failed(up, -ENOMEM, "out of memory");
            return;
        }
        k = resp_read(up, buf_data(in), buf_used(in));
        if (!up_held(up, use))
            return;
        if (k >= 0)
            buf_consume(in, (uint32_t)k);
        else
            in->off = in->len = 0; /* all handled */
    }
    if (up_held(up, use) && !up->ended && up->ops->flush)
        up->ops->flush(up);
}

/* Once the handshake is done, the request held back during it goes out. */
static int up_release_wait(struct upconn *up)
{
    int rc = 0;

    if (buf_used(&up->tls_wait) && tls_handshake_done(up->tls)) {
        rc = tls_send(up->tls, buf_data(&up->tls_wait), buf_used(&up->tls_wait)) < 0 ? -EPROTO : 0;
        buf_free(&up->tls_wait);
    }
    return rc;
}

static void up_tls_data(struct upconn *up, const char *p, uint32_t n)
{
    struct worker *w = up->w;
    ssize_t k = tls_recv(up->tls, p, n, w->plain, TLS_PLAIN_CAP);
    char why[128];

    while (k > 0 && !up->sk.dead) {
        up_plain_data(up, w->plain, (uint32_t)k);
        if (up->sk.dead)
            return;
        k = tls_recv(up->tls, NULL, 0, w->plain, TLS_PLAIN_CAP);
    }
    if (up->sk.dead)
        return;
    if (k == -ECONNRESET) { /* close_notify */
        up_on_eof(up, 0);
        return;
    }
    if (k < 0 || up_release_wait(up)) {
        snprintf(why, sizeof(why), "TLS: %s", tls_error(up->tls));
        if (up->ops && up->state == US_READY)
            up->ops->failed(up, -EPROTO, why);
        else
            up_close(up);
        return;
    }
    sock_flush(w, &up->sk); /* handshake messages, and the request once it may go */
}

void up_on_data(struct upconn *up, char *p, uint32_t n)
{
    if (up->tls)
        up_tls_data(up, p, n); /* idle pooled connections may get tickets: not an error */
    else
        up_plain_data(up, p, n);
}

void up_on_eof(struct upconn *up, int err)
{
    if (up->state != US_READY || !up->ops) {
        up_close(up);
        return;
    }
    if (err) {
        up->ops->failed(up, err, up->got_bytes ? "failed mid-response" : "failed");
    } else if (up->read == UR_TUNNEL) {
        up->ops->eof(up);
    } else if (up->read == UR_BODY && up->body == H1_BODY_UNTIL_CLOSE) {
        up->reuse_ok = false;
        resp_end(up, 0);
    } else {
        up->ops->failed(up, -ECONNRESET,
                        up->read == UR_BODY ? "closed mid-response" : "closed before responding");
    }
}

void up_on_sent(struct upconn *up)
{
    up->req_sent = true;
    if (up->ops && up->ops->sent)
        up->ops->sent(up);
    up_update_timer(up);
}

void up_close(struct upconn *up)
{
    if (up->sk.dead)
        return;
    if (up->h2) {
        if (is_background(up))
            list_del(&up->link);
        up->ops = NULL;
        up->user = NULL;
        h2u_close(up);
        return;
    }
    if (up->state == US_IDLE)
        pool_remove(up);
    else if (is_background(up))
        list_del(&up->link);
    pool_unbusy(up);
    up->ops = NULL;
    up->user = NULL;
    sock_kill(up->w, &up->sk);
}

void up_release_to_pool(struct upconn *up, bool reusable)
{
    if (is_background(up))
        list_del(&up->link);
    up->ops = NULL;
    up->user = NULL;
    if (up->h2) {
        h2u_release(up, reusable);
        return;
    }
    pool_unbusy(up);
    if (!reusable || up->w->draining || !pool_has_room(up) || up->t->send_pp ||
        atomic_load_explicit(&up->be->retired, memory_order_relaxed)) {
        up_close(up);
        return;
    }
    up->state = US_IDLE;
    up->reused = false;
    buf_free(&up->sk.in); /* reusable means nothing is in flight or left over */
    buf_free(&up->sk.out.sending);
    buf_free(&up->sk.out.pending);
    pool_push(up);
    sock_recv_start(up->w, &up->sk);
    up_update_timer(up);
    /* its target belongs to the snapshot of the request that used it, which a reload may
     * free while it waits here: the next up_get names the target again */
    up->t = NULL;
}

void up_release(struct upconn *up)
{
    tls_conn_free(up->tls);
    buf_free(&up->tls_wait);
    free(up);
}

static void pool_close(struct worker *w, uint32_t i)
{
    while (!list_empty(&w->pools[i].idle))
        up_close(container_of(w->pools[i].idle.next, struct upconn, link));
    h2u_pool_close(w, i);
}

void pools_close_all(struct worker *w)
{
    for (uint32_t i = 0; i < w->s->be_slots.cap; i++)
        pool_close(w, i);
    while (!list_empty(&w->background)) {
        struct upconn *up = container_of(w->background.next, struct upconn, link);
        up->ops->failed(up, -ECANCELED, "the worker is draining");
        if (w->background.next == &up->link) /* the user should have closed it */
            up_close(up);
    }
}

/* The worker's pools, one per backend, and its list of background connections. */
static int upstream_init(struct worker *w)
{
    uint32_t n = w->s->be_slots.cap ? w->s->be_slots.cap : 1;

    if (!(w->pools = calloc(n, sizeof(*w->pools))))
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        list_init(&w->pools[i].idle);
        list_init(&w->pools[i].h2);
    }
    list_init(&w->background);
    return 0;
}

static void upstream_fini(struct worker *w)
{
    free(w->pools);
    w->pools = NULL;
}

static void up_timeout(struct timer *t, uint64_t now)
{
    struct upconn *up = container_of(t, struct upconn, sk.tm);

    if (up->try_deadline_ms && !up->got_bytes && up->state != US_IDLE &&
        now >= up->try_deadline_ms) {
        up->try_deadline_ms = 0; /* once per attempt */
        if (up->ops->try_timeout)
            up->ops->try_timeout(up);
        else
            up_update_timer(up);
        return;
    }
    switch (up->state) {
    case US_IDLE:
        up_close(up);
        break;
    case US_CONNECTING:
        up->ops->failed(up, -ETIMEDOUT, "connect timed out");
        break;
    default:
        up->ops->failed(up, -ETIMEDOUT,
                        up->sk.out.busy ? "write timed out"
                        : up->got_bytes ? "read timed out mid-response"
                                        : "no response within read_timeout");
    }
}

static void u_on_data(struct sock *s, char *p, uint32_t n)
{
    up_on_data((struct upconn *)s, p, n);
}

static void u_on_eof(struct sock *s, int err)
{
    up_on_eof((struct upconn *)s, err);
}

static void u_on_sent(struct sock *s)
{
    up_on_sent((struct upconn *)s);
}

static void u_on_socket(struct sock *s, int res)
{
    up_on_socket((struct upconn *)s, res);
}

static void u_on_connect(struct sock *s, int res)
{
    up_on_connect((struct upconn *)s, res);
}

static void u_release(struct sock *s)
{
    up_release((struct upconn *)s);
}

static const struct sock_ops up_ops = {
    .on_data = u_on_data,
    .on_eof = u_on_eof,
    .on_sent = u_on_sent,
    .on_socket = u_on_socket,
    .on_connect = u_on_connect,
    .release = u_release,
};

/* A reload removed backends: their idle connections close now (in-flight ones close when
 * their requests end: be->retired). Kept backends keep their pools. */
static void upstream_adopt(struct worker *w, struct snapshot *old)
{
    for (uint32_t i = 0; i < old->rt.n_backends; i++)
        if (atomic_load(&old->rt.backends[i]->retired))
            pool_close(w, old->rt.backends[i]->index);
}

const struct worker_module upstream_module = {
    .init = upstream_init,
    .adopt = upstream_adopt,
    .drain = pools_close_all,
    .force = pools_close_all,
    .fini = upstream_fini,
    .name = "backend pools",
};
