/* tunnel.c: Upgrade tunnels (WebSocket and any other protocol switch but h2c). A request with
 * Connection: upgrade and an Upgrade field goes to its backend with both re-created (they are
 * hop-by-hop); on a 101 the exchange becomes a byte relay between the client's transport and
 * the backend connection: at most WINDOW_BYTES queued each way (the other side's receive is
 * held back past that), half-closes passed on (TLS close_notify first), and closed after
 * tunnel_idle_timeout without a byte either way. The backend connection is never pooled again.
 */
#include <string.h>

#include "../tls/tls.h"
#include "internal.h"
#include "log.h"

/* ex->tun bits: which side said it is done, and what has been passed on to the other */
enum {
    TUN_CLIENT_EOF = 1 << 0,  /* the client will send nothing more */
    TUN_BACKEND_EOF = 1 << 1, /* the backend will send nothing more */
    TUN_UP_NOTIFY = 1 << 2,   /* close_notify queued to a TLS backend */
    TUN_UP_SHUT = 1 << 3,     /* the backend's write side shut */
    TUN_C_NOTIFY = 1 << 4,    /* close_notify queued to a TLS client */
    TUN_C_SHUT = 1 << 5,      /* the client's write side shut */
};

const struct h1_header *tunnel_wanted(const struct h1_request *r, const struct target *t)
{
    const struct h1_header *proto = NULL;
    bool asked = false;

    /* RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored; a request body would have to
     * be read before the switch, so those are not tunnelled either */
    if (t->no_upgrade || r->minor == 0 || r->body != H1_BODY_NONE)
        return NULL;
    for (uint32_t i = 0; i < r->n_headers; i++) {
        const struct h1_header *h = &r->headers[i];
        if (h->kind == H1_H_UPGRADE) {
            if (proto)
                return NULL; /* two fields: ambiguous, not tunnelled */
            proto = h;
        } else if (h->kind == H1_H_CONNECTION) {
            asked |= h1_list_has(h->value, h->value_len, "upgrade");
        }
    }
    if (!asked || !proto || !proto->value_len || h1_list_has(proto->value, proto->value_len, "h2c"))
        return NULL; /* h2c is HTTP/2, which is not tunnelled: the field is dropped */
    return proto;
}

bool tunnel_put_request_fields(const struct h1_request *r, const struct target *t, struct buf *b,
                               bool *ok)
{
    const struct h1_header *proto = tunnel_wanted(r, t);

    if (!proto)
        return false;
    buf_put(b, ok, "Connection: upgrade\r\nUpgrade: ", 30);
    buf_put(b, ok, proto->value, proto->value_len);
    buf_put(b, ok, "\r\n", 2);
    return true;
}

bool tunnel_response_ok(const struct h1_response *r)
{
    for (uint32_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].kind == H1_H_UPGRADE && r->headers[i].value_len)
            return true;
    return false; /* RFC 9110 15.2.2: a 101 names the protocol switched to */
}

void tunnel_begin(struct conn *c, struct upconn *up, const struct h1_response *r)
{
    struct exchange *ex = c->ex;
    struct buf *b = conn_head_buf(c), *in = &c->sk.in;
    bool ok = true;

    ex->state = EX_TUNNEL;
    up_tunnel(up);
    ctr_add(&c->w->tunnels, 1);
    metrics_request(c->w, ex->t, 101);
    alog_status(ex, 101); /* logged when the tunnel ends, with the bytes sent to the client */
    health_report_success(c->w, ex->be);
    buf_put(b, &ok, "HTTP/1.1 101 ", 13);
    if (r->reason_len)
        buf_put(b, &ok, r->reason, r->reason_len);
    else
        buf_put(b, &ok, "Switching Protocols", 19);
    buf_put(b, &ok, "\r\n", 2);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        const struct h1_header *h = &r->headers[i];
        if (h->kind == H1_H_UPGRADE) {
            buf_put(b, &ok, "Upgrade: ", 9);
            buf_put(b, &ok, h->value, h->value_len);
            buf_put(b, &ok, "\r\n", 2);
        } else if (!h->hop && h->kind != H1_H_CONTENT_LENGTH) {
            buf_put_header(b, &ok, h);
        }
    }
    buf_put(b, &ok, "Connection: upgrade\r\n\r\n", 23);
    conn_head_done(c, ok);
    if (c->sk.dead)
        return;
    /* what the client sent after its request belongs to the new protocol */
    if (buf_used(in)) {
        tunnel_client_data(c, buf_data(in), buf_used(in));
        if (!c->sk.dead)
            buf_consume(in, buf_used(in));
    }
    up_update_timer(up);
    conn_update_timer(c);
}

void tunnel_client_data(struct conn *c, const char *p, uint32_t n)
{
    struct exchange *ex = c->ex;
    struct upconn *up = ex->up;

    if (ex->tun & TUN_CLIENT_EOF)
        return;
    ctr_add(&c->w->tunnel_bytes_in, n);
    if (up_queue(up, p, n)) {
        conn_close(c);
        return;
    }
    sock_flush(c->w, &up->sk);
    if (outq_bytes(&up->sk.out) > WINDOW_BYTES && !c->recv_paused) {
        c->recv_paused = true; /* ex_upstream_sent reads on once the backend took half */
        sock_recv_stop(c->w, &c->sk);
    }
    up_update_timer(up);
    conn_update_timer(c);
}

void tunnel_backend_data(struct conn *c, struct upconn *up, const char *p, uint32_t n)
{
    ctr_add(&c->w->tunnel_bytes_out, n);
    alog_body(c->ex, n);
    conn_queue_bytes(c, p, n);
    if (c->sk.dead)
        return;
    if (outq_bytes(&c->sk.out) > WINDOW_BYTES)
        sock_recv_stop(c->w, &up->sk); /* conn_on_sent reads on once the client caught up */
    conn_flush_out(c);
    conn_update_timer(c);
}

/* Shuts one side's write half once every byte queued before it is out: close_notify first
 * on TLS, then a FIN. `tun` holds the side's NOTIFY and SHUT bits. */
static void shut_side(struct worker *w, struct sock *sk, struct tls_conn *tls, uint8_t *tun,
                      uint8_t notify, uint8_t shut)
{
    if ((*tun & shut) || sk->dead || sk->out.busy || outq_bytes(&sk->out))
        return;
    if (tls && !(*tun & notify)) {
        *tun |= notify;
        tls_shutdown(tls);
        sock_flush(w, sk);
        if (sk->out.busy)
            return; /* the FIN follows the close_notify: tunnel_sent runs again */
    }
    *tun |= shut;
    sock_shutdown_write(w, sk);
}

void tunnel_sent(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct upconn *up = ex->up;

    if (ex->state != EX_TUNNEL || c->sk.dead || !up)
        return;
    if (ex->tun & TUN_CLIENT_EOF)
        shut_side(c->w, &up->sk, up->tls, &ex->tun, TUN_UP_NOTIFY, TUN_UP_SHUT);
    if (ex->tun & TUN_BACKEND_EOF) {
        shut_side(c->w, &c->sk, c->tls, &ex->tun, TUN_C_NOTIFY, TUN_C_SHUT);
        c->tls_notified = (ex->tun & TUN_C_NOTIFY) != 0;
    }
    if ((ex->tun & (TUN_UP_SHUT | TUN_C_SHUT)) == (TUN_UP_SHUT | TUN_C_SHUT))
        conn_close(c); /* both ways done: each close waits for its shutdown */
}

void tunnel_client_eof(struct conn *c, int err)
{
    if (err) {
        conn_close(c);
        return;
    }
    c->ex->tun |= TUN_CLIENT_EOF;
    tunnel_sent(c);
}

void tunnel_backend_eof(struct conn *c)
{
    c->ex->tun |= TUN_BACKEND_EOF;
    tunnel_sent(c);
}
