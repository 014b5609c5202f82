/* upstream_h2.c: HTTP/2 to backends (h2c:// in the clear, h2:// over TLS with ALPN h2), on
 * libnghttp2's client side, behind the upstream client's own interface (upstream.h): a user
 * (an exchange, a health probe, a refresh) gets a struct upconn as from any backend, queues an
 * HTTP/1.1 request into it and hears of the response through its struct up_ops.
 *
 * Such an upconn is a stream (struct h2u_stream, up.h2): its sock has no socket of its own
 * (sock_flush and sock_recv_start/stop come here through its sock_ops). The request the user
 * queued (its head, then the body as framed: content-length or chunked) becomes HEADERS and
 * DATA; the response's HEADERS become the struct h1_response a backend's HTTP/1.1 head would
 * have been, its DATA body bytes (chunk-framed in `raw` when it had no content-length, so an
 * HTTP/1.1 client gets it chunked), its trailers the last chunk's and up_body.trailers (so
 * gRPC's grpc-status reaches HTTP/1.1 and HTTP/2 clients alike).
 *
 * The connections (struct h2u_sess) ride on a plain upconn in tunnel mode (its connect, TLS,
 * and write timeout): one per backend per worker, a second when the first has as many streams
 * as the backend allows, and one of its own for a fresh request (a health check, a retry after
 * a stale connection). A connection without streams closes after its domain's idle_timeout.
 * A stream the backend refused (REFUSED_STREAM, or past a GOAWAY's last stream id) fails as a
 * stale pooled connection does: it provably was not processed, so it is retried.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2common.h"
#include "internal.h"
#include "log.h"

#define H2U_OUT_HIGH (64u * 1024) /* frames serialised ahead of the connection's socket */

struct h2u_sess {
    struct upconn *tr; /* the connection it rides on, NULL once closed */
    struct worker *w;
    struct backend *be;
    nghttp2_session *ng;
    struct list_node link;    /* the backend's connections in this worker (pool.h2) */
    struct list_node streams; /* struct h2u_stream.link */
    uint32_t n_streams;
    uint32_t idle_ms; /* idle_timeout of the last stream's domain */
    bool ready;       /* TCP (and TLS) is up */
    bool dead;        /* failed, told GOAWAY, or closing: takes no new stream */
    bool own;         /* one stream's alone (fresh): closes with it */
    int failed;       /* nghttp2 or the connection failed: the error (it closes) */
    bool busy, want_pump, free_me;
    bool closing;      /* sess_close runs: its streams' users are closing them */
    struct timer idle; /* closes it idle_ms after its last stream */
    struct buf raw;    /* a DATA chunk framed for HTTP/1.1 clients */
};

struct h2u_stream {
    struct upconn up; /* first: what its user holds */
    struct h2u_sess *s;
    struct list_node link;
    int32_t id;           /* 0 until the request's HEADERS are submitted */
    bool head_sent;       /* its HEADERS were submitted */
    bool deferred;        /* the request's data source waits for bytes */
    bool chunked_req;     /* the request body is chunk-framed in up.sk.out.pending */
    bool req_end;         /* the request body is whole (EOF given to nghttp2) */
    bool resp_chunked;    /* the response had no content-length: chunk-framed for HTTP/1.1 */
    bool resp_has_length; /* the response head being read has a content-length */
    bool in_trailers;     /* the HEADERS being read are trailers */
    bool resp_done;       /* the response ended (ops->end ran) */
    bool flush;           /* body bytes were handed over in this receive */
    uint16_t status;      /* of the HEADERS being read */
    uint64_t req_left;    /* content-length bytes of the request still to send */
    struct h1_chunked ck; /* the request body's chunk decoder */
    bool closed;          /* nghttp2 closed the stream */
    uint64_t unacked;     /* response DATA not yet given back as window (held back) */
    struct buf hdr;       /* the response's fields (or trailers) as HTTP/1.1 lines */
};

static struct h2u_stream *stream_of(struct upconn *up)
{
    return (struct h2u_stream *)(void *)up;
}

static void sess_pump(struct h2u_sess *s);
static void sess_close(struct h2u_sess *s, int err, const char *what);
static void stream_flush_sock(struct sock *sk);
static void stream_recv_ctl(struct sock *sk, bool on);
static void stream_release(struct sock *sk);

static const struct sock_ops stream_sock_ops = {
    .release = stream_release,
    .flush = stream_flush_sock,
    .recv_ctl = stream_recv_ctl,
};

/* Whether the stream's user still holds it after a callback (upstream.c's up_held). */
static bool held(const struct upconn *up, uint32_t use)
{
    return !up->sk.dead && up->ops && up->use == use;
}

struct upconn *h2u_get(struct worker *w, struct backend *be)
{
    struct h2u_stream *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    sock_init(&st->up.sk, -1, &stream_sock_ops);
    st->up.sk.recv = RECV_ARMED; /* its DATA is taken as it comes, unless held back */
    st->up.sk.want_recv = true;
    st->up.w = w;
    st->up.be = be;
    st->up.h2 = true;
    return &st->up;
}

static void stream_release(struct sock *sk)
{
    struct h2u_stream *st = (struct h2u_stream *)(void *)sk;

    buf_free(&st->hdr);
    free(st);
}

/* The stream leaves its connection (the user is done with it, or it failed). */
static void stream_detach(struct h2u_stream *st)
{
    struct h2u_sess *s = st->s;

    if (!s)
        return;
    if (st->id) {
        nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
        if (st->unacked)
            nghttp2_session_consume_connection(s->ng, (size_t)st->unacked);
    }
    st->unacked = 0;
    list_del(&st->link);
    s->n_streams--;
    st->s = NULL;
}

/* Ends the stream at the backend unless it ended there already. */
static void stream_cancel(struct h2u_stream *st)
{
    struct h2u_sess *s = st->s;

    if (s && st->id && !s->dead && !st->closed && !(st->resp_done && st->req_end) &&
        nghttp2_session_find_stream(s->ng, st->id))
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
}

void h2u_close(struct upconn *up)
{
    struct h2u_stream *st = stream_of(up);
    struct h2u_sess *s = st->s;

    stream_cancel(st);
    stream_detach(st);
    sock_kill(up->w, &up->sk);
    if (!s || s->closing || s->free_me)
        return;
    if (s->n_streams) {
        sess_pump(s); /* (its RST_STREAM) */
        return;
    }
    if (s->tr)
        s->tr->t = NULL; /* its target may go with a reload while it idles */
    if (s->own || s->dead || s->w->draining ||
        atomic_load_explicit(&s->be->retired, memory_order_relaxed)) {
        sess_close(s, 0, NULL);
        return;
    }
    timer_arm(s->w->tw, &s->idle, s->w->now_ms + s->idle_ms);
    sess_pump(s);
}

void h2u_release(struct upconn *up, bool reusable)
{
    (void)reusable; /* a stream is never reused: its connection is what stays */
    h2u_close(up);
}

/* ---- the request --------------------------------------------------------------------------- */

/* nghttp2's data source: the request body from up.sk.out.pending, unframed. */
static ssize_t req_read(nghttp2_session *ng, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    struct h2u_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    struct buf *b;
    size_t got = 0;

    (void)src;
    (void)user;
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    b = &st->up.sk.out.pending;
    if (!st->chunked_req) {
        uint64_t n = buf_used(b) < len ? buf_used(b) : len;
        if (n > st->req_left)
            n = st->req_left;
        memcpy(out, buf_data(b), (size_t)n);
        buf_consume(b, (uint32_t)n);
        st->req_left -= n;
        got = (size_t)n;
        st->req_end = !st->req_left;
    } else {
        while (!got && buf_used(b) && !st->req_end) {
            size_t feed = buf_used(b) < len ? buf_used(b) : len;
            ssize_t k =
                h1_chunked_feed(&st->ck, buf_data(b), feed, (char *)out, &got, &st->req_end);
            if (k < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* (the exchange checked it) */
            buf_consume(b, (uint32_t)k);
        }
    }
    if (st->req_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)got;
    }
    if (!got) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)got;
}

/* Whether a request field goes to an HTTP/2 backend: not a connection-specific one (RFC 9113
 * section 8.2.2), nor Host (it is :authority). */
static bool req_field_sent(const struct h1_header *f)
{
    return !f->hop && f->kind != H1_H_HOST && f->kind != H1_H_TRANSFER_ENCODING;
}

/* The request head the user queued is whole: HEADERS. Returns 0, -EAGAIN (not whole yet),
 * or a negative errno (the stream fails). */
static int req_submit(struct h2u_stream *st)
{
    struct upconn *up = &st->up;
    struct buf *b = &up->sk.out.pending;
    struct h1_header hdrs[H1_HEADERS_CAP];
    struct h1_request r = {.headers = hdrs, .headers_cap = H1_HEADERS_CAP};
    struct h1_limits lim = {1u << 20, H1_HEADERS_CAP, 1u << 20}; /* (the user's own head) */
    nghttp2_nv nv[H1_HEADERS_CAP + 5];
    nghttp2_data_provider prd = {.read_callback = req_read};
    size_t n = 0;
    int status, rc = h1_parse_request(buf_data(b), buf_used(b), &r, &lim, &status);
    int32_t id;

#define NV(name, v, vl)                                                                            \
    (nghttp2_nv)                                                                                   \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(v), sizeof(name) - 1, (vl), NGHTTP2_NV_FLAG_NONE            \
    }
    if (rc == -EAGAIN)
        return -EAGAIN;
    if (rc < 0 || !r.host)
        return -EBADMSG;
    nv[n++] = NV(":method", r.method, r.method_len);
    nv[n++] = NV(":scheme", up->be->tls ? "https" : "http", up->be->tls ? 5 : 4);
    nv[n++] = NV(":authority", r.host, r.host_len);
    nv[n++] = NV(":path", r.path, r.path_len);
    for (uint32_t i = 0; i < r.n_headers; i++) {
        struct h1_header *f = &r.headers[i];
        if (!req_field_sent(f))
            continue;
        h2_lower((char *)f->name, f->name_len);
        nv[n++] = (nghttp2_nv){(uint8_t *)f->name, (uint8_t *)f->value, f->name_len, f->value_len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    /* trailers are expected (gRPC needs the field; TE itself is hop-by-hop) */
    nv[n++] = NV("te", "trailers", 8);
#undef NV
    st->chunked_req = r.body == H1_BODY_CHUNKED;
    st->req_left = r.content_length;
    st->req_end = r.body == H1_BODY_NONE;
    id = nghttp2_submit_request(st->s->ng, NULL, nv, n, st->req_end ? NULL : &prd, st);
    buf_consume(b, (uint32_t)rc); /* (after: nghttp2 copied the fields) */
    if (id < 0)
        return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? -ECONNRESET : -ENOMEM;
    st->id = id;
    st->head_sent = true;
    return 0;
}

/* The user queued request bytes and asked for them to go (sock_flush). */
static void stream_flush_sock(struct sock *sk)
{
    struct h2u_stream *st = (struct h2u_stream *)(void *)sk;
    struct h2u_sess *s = st->s;
    int rc;

    if (!s || !st->up.ops)
        return;
    if (!st->head_sent) {
        if (!buf_used(&sk->out.pending)) /* nothing yet (a TCP health check: never) */
            return;
        if ((rc = req_submit(st)) == -EAGAIN)
            return;
        if (rc < 0) {
            st->up.ops->failed(&st->up, rc, rc == -EBADMSG ? "bad request head" : "HTTP/2");
            return;
        }
    } else if (st->deferred && buf_used(&sk->out.pending)) {
        st->deferred = false;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    sess_pump(s);
}

/* The user holds the response back (its client is slow): its DATA is not acknowledged, so the
 * backend's window for the stream closes. */
static void stream_recv_ctl(struct sock *sk, bool on)
{
    struct h2u_stream *st = (struct h2u_stream *)(void *)sk;

    if (!on || !st->s || !st->unacked)
        return;
    nghttp2_session_consume(st->s->ng, st->id, (size_t)st->unacked);
    st->unacked = 0;
    sess_pump(st->s);
}

/* ---- the response ------------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct h2u_stream *st = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);

    (void)user;
    if (!st)
        return 0;
    st->in_trailers = st->up.read == UR_BODY;
    st->status = 0;
    st->resp_has_length = false;
    st->hdr.off = st->hdr.len = 0;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name, size_t nn,
                     const uint8_t *value, size_t vn, uint8_t flags, void *user)
{
    struct h2u_stream *st = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
    struct h2u_sess *s = user;
    bool ok = true;

    (void)flags;
    if (!st)
        return 0;
    if (nn == 7 && !memcmp(name, ":status", 7)) {
        st->status =
            vn == 3 ? (uint16_t)((value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0'))
                    : 0;
        return 0;
    }
    if (nn && name[0] == ':')
        return 0;
    st->resp_has_length |= nn == 14 && !memcmp(name, "content-length", 14);
    if (buf_used(&st->hdr) + nn + vn + 4 > s->w->s->lim.max_head_bytes)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* too large: the stream is reset */
    buf_put(&st->hdr, &ok, name, nn);
    buf_put(&st->hdr, &ok, ": ", 2);
    buf_put(&st->hdr, &ok, value, vn);
    buf_put(&st->hdr, &ok, "\r\n", 2);
    return ok ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* The response (or the request) is over for the user: ops->end. */
static void resp_end(struct h2u_stream *st)
{
    struct upconn *up = &st->up;

    st->resp_done = true;
    up->read = UR_HEAD;
    up->ended = true;
    up->ops->end(up, true);
}

/* Body bytes for the user: `raw` chunk-framed when the response had no content-length. */
static bool resp_body(struct h2u_stream *st, const char *data, uint32_t n,
                      const struct h1_header *trl, uint32_t n_trl, const char *last,
                      uint32_t last_len)
{
    struct upconn *up = &st->up;
    struct buf *raw = &st->s->raw;
    struct up_body b = {.raw = (char *)data,
                        .data = data,
                        .raw_len = n,
                        .data_len = n,
                        .trailers = trl,
                        .n_trailers = n_trl};
    uint32_t use = up->use;
    bool ok = true;

    if (st->resp_chunked) {
        char line[24];
        raw->off = raw->len = 0;
        if (n) {
            int k = snprintf(line, sizeof(line), "%x\r\n", n);
            buf_put(raw, &ok, line, (size_t)k);
            buf_put(raw, &ok, data, n);
            buf_put(raw, &ok, "\r\n", 2);
        }
        buf_put(raw, &ok, last, last_len);
        if (!ok) {
            up->ops->failed(up, -ENOMEM, "out of memory");
            return false;
        }
        b.raw = buf_data(raw);
        b.raw_len = buf_used(raw);
    }
    if ((b.raw_len || b.data_len || n_trl) && up->ops->body) {
        up->ops->body(up, &b);
        if (!held(up, use))
            return false;
    }
    st->flush = true;
    return true;
}

/* A response head (or trailers) whole: as the HTTP/1.1 head it stands for, to the user. It is
 * composed in the worker's synth buffer, which nothing else uses while the user is told. */
static void resp_headers(struct h2u_stream *st, bool end)
{
    struct upconn *up = &st->up;
    struct h1_header hdrs[H1_HEADERS_CAP];
    struct h1_response r = {.headers = hdrs, .headers_cap = H1_HEADERS_CAP};
    struct h1_limits lim = {UINT32_MAX, H1_HEADERS_CAP, 0};
    struct buf *head = &up->w->synth;
    uint32_t use = up->use, head_len;
    bool ok = true;
    int rc;

    head->off = head->len = 0;
    if (st->in_trailers) { /* the last chunk carries them; HTTP/2 clients get them as such */
        buf_put(head, &ok, "HTTP/1.1 200 OK\r\n", 17);
        buf_put(head, &ok, buf_data(&st->hdr), buf_used(&st->hdr));
        buf_put(head, &ok, "\r\n", 2);
        head_len = buf_used(head);
        buf_put(head, &ok, "0\r\n", 3); /* then the last chunk, for HTTP/1.1 clients */
        buf_put(head, &ok, buf_data(&st->hdr), buf_used(&st->hdr));
        buf_put(head, &ok, "\r\n", 2);
        /* (parsed as a HEAD's answer: no body, whatever the fields say) */
        rc = ok ? h1_parse_response(buf_data(head), head_len, &r, &lim, H1_M_HEAD) : -1;
        if (rc < 0)
            up->ops->failed(up, -EBADMSG, "malformed trailers");
        else if (resp_body(st, NULL, 0, r.headers, r.n_headers, buf_data(head) + head_len,
                           buf_used(head) - head_len) &&
                 held(up, use))
            resp_end(st);
        return;
    }
    buf_put(head, &ok, "HTTP/1.1 ", 9);
    buf_put_status(head, &ok, st->status);
    buf_put(head, &ok, " OK\r\n", 5); /* (the reason is not HTTP/2's: h1_reason's is sent) */
    buf_put(head, &ok, buf_data(&st->hdr), buf_used(&st->hdr));
    /* without a content-length the body ends with the stream: chunked to HTTP/1.1 clients,
     * or empty when the stream ended with its head (the parser ignores both where a status
     * or HEAD has no body) */
    if (!st->resp_has_length)
        buf_put_str(head, &ok, end ? "content-length: 0\r\n" : "transfer-encoding: chunked\r\n");
    buf_put(head, &ok, "\r\n", 2);
    rc =
        ok ? h1_parse_response(buf_data(head), buf_used(head), &r, &lim, (enum h1_method)up->method)
           : -ENOMEM;
    if (rc < 0 || !st->status) {
        up->ops->failed(up, -EBADMSG, "malformed response head");
        return;
    }
    r.reason_len = 0; /* h1_reason(status) when written to an HTTP/1.1 client */
    st->resp_chunked = r.body == H1_BODY_CHUNKED;
    up->got_bytes = true;
    if (r.status >= 200) {
        up->read = UR_BODY;
        up->body = r.body;
        up->reuse_ok = true;
    }
    up->ops->head(up, &r);
    if (!held(up, use) || r.status < 200)
        return;
    if (up->skip_body || r.body == H1_BODY_NONE ||
        (r.body == H1_BODY_LENGTH && !r.content_length)) {
        if (!end)
            stream_cancel(st); /* nobody reads the rest */
        resp_end(st);
        return;
    }
    if (end) { /* (a content-length with no DATA: the user hears it was cut short) */
        up->ops->failed(up, -ECONNRESET, "closed mid-response");
        return;
    }
    up_update_timer(up);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct h2u_sess *s = user;
    struct h2u_stream *st =
        fr->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id) : NULL;
    bool end = fr->hd.flags & NGHTTP2_FLAG_END_STREAM;

    if (fr->hd.type == NGHTTP2_GOAWAY) {
        s->dead = true; /* no new stream; those past its last id are refused (on_close) */
        return 0;
    }
    if (!st || !st->up.ops || st->resp_done)
        return 0;
    if (fr->hd.type == NGHTTP2_HEADERS) {
        resp_headers(st, end);
    } else if (fr->hd.type == NGHTTP2_DATA && end) {
        uint32_t use = st->up.use;
        if (resp_body(st, NULL, 0, NULL, 0, "0\r\n\r\n", 5) && held(&st->up, use))
            resp_end(st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct h2u_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    struct upconn *up;

    (void)flags;
    (void)user;
    if (!st || !st->up.ops || st->resp_done || st->up.read != UR_BODY) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    up = &st->up;
    up->got_bytes = true;
    st->unacked += len;
    if (!resp_body(st, (const char *)data, (uint32_t)len, NULL, 0, NULL, 0))
        return 0;
    if (st->s && up->sk.recv == RECV_ARMED) { /* not held back: the window opens again */
        nghttp2_session_consume(ng, id, (size_t)st->unacked);
        st->unacked = 0;
    }
    up_update_timer(up);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct h2u_stream *st =
        fr->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id) : NULL;
    uint32_t use;

    (void)user;
    if (!st || !st->up.ops || (fr->hd.type != NGHTTP2_HEADERS && fr->hd.type != NGHTTP2_DATA))
        return 0;
    st->up.req_sent = true;
    use = st->up.use;
    if (fr->hd.type == NGHTTP2_DATA && st->up.ops->sent &&
        buf_used(&st->up.sk.out.pending) < WINDOW_BYTES / 2)
        st->up.ops->sent(&st->up); /* the backend takes the body: the client may send more */
    if (held(&st->up, use))
        up_update_timer(&st->up);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t err, void *user)
{
    struct h2u_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    struct upconn *up;

    (void)user;
    if (st)
        st->closed = true;
    if (!st || st->resp_done || !st->up.ops)
        return 0;
    up = &st->up;
    if (err == NGHTTP2_REFUSED_STREAM) { /* not processed: safe to send again (RFC 9113 8.7) */
        up->reused = true;
        up->req_sent = false;
        up->got_bytes = false;
    }
    up->ops->failed(up, -ECONNRESET,
                    err == NGHTTP2_REFUSED_STREAM ? "stream refused by the backend"
                                                  : "stream reset by the backend");
    return 0;
}

/* ---- the connection -------------------------------------------------------------------------- */

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

static void callbacks_init(void)
{
    static const struct h2_handlers h = {
        .begin_headers = on_begin_headers,
        .header = on_header,
        .frame_recv = on_frame_recv,
        .frame_send = on_frame_send,
        .data_chunk = on_data_chunk,
        .stream_close = on_stream_close,
    };

    if (h2_setup(&h, &callbacks, &options))
        callbacks = NULL;
}

static void sess_free(struct h2u_sess *s)
{
    if (s->busy) {
        s->free_me = true;
        return;
    }
    nghttp2_session_del(s->ng);
    buf_free(&s->raw);
    free(s);
}

/* The connection ends: its streams fail (their users close them), then it closes. */
static void sess_close(struct h2u_sess *s, int err, const char *what)
{
    if (s->closing)
        return;
    s->closing = s->dead = true;
    timer_disarm(s->w->tw, &s->idle);
    while (!list_empty(&s->streams)) {
        struct h2u_stream *st = container_of(s->streams.next, struct h2u_stream, link);
        if (st->up.ops && !st->resp_done)
            st->up.ops->failed(&st->up, err ? err : -ECONNRESET, what ? what : "closed");
        if (st->s == s) /* the user should have closed it */
            h2u_close(&st->up);
    }
    list_del(&s->link);
    if (s->tr) {
        struct upconn *tr = s->tr;
        s->tr = NULL;
        up_close(tr);
    }
    sess_free(s);
}

static void sess_idle(struct timer *t, uint64_t now)
{
    struct h2u_sess *s = container_of(t, struct h2u_sess, idle);

    (void)now;
    if (!s->n_streams)
        sess_close(s, 0, NULL);
}

/* Frames nghttp2 has to send go into the connection's output (bounded: the rest when its
 * send completes). */
static void sess_pump(struct h2u_sess *s)
{
    struct upconn *tr = s->tr;

    if (s->closing)
        return;
    if (s->busy) {
        s->want_pump = true;
        return;
    }
    if (!tr || tr->sk.dead)
        return;
    s->busy = true;
    do {
        s->want_pump = false;
        while (outq_bytes(&tr->sk.out) + buf_used(&tr->tls_wait) < H2U_OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(s->ng, &p);
            if (n <= 0) {
                if (n < 0) {
                    log_warn("backend %s: HTTP/2: %s", s->be->addr, nghttp2_strerror((int)n));
                    s->failed = -EPROTO;
                }
                break;
            }
            if (up_queue(tr, p, (uint32_t)n)) {
                s->failed = -ENOMEM;
                break;
            }
        }
    } while (s->want_pump && !s->failed);
    s->busy = false;
    if (s->free_me) {
        sess_free(s);
        return;
    }
    if (s->failed && s->tr) {
        sess_close(s, s->failed, "HTTP/2 session failed");
        return;
    }
    sock_flush(s->w, &tr->sk);
    up_update_timer(tr);
    if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng))
        sess_close(s, -ECONNRESET, "the backend ended the HTTP/2 connection");
}

static void tr_ready(struct upconn *tr)
{
    struct h2u_sess *s = tr->user;

    s->ready = true;
    s->busy = true; /* a user may close its stream, and with it the connection */
    for (struct list_node *n = s->streams.next, *next; n != &s->streams; n = next) {
        struct h2u_stream *st = container_of(n, struct h2u_stream, link);
        next = n->next;
        st->up.state = US_READY;
        up_update_timer(&st->up);
        if (st->up.ops && st->up.ops->ready)
            st->up.ops->ready(&st->up); /* (a TCP health check is answered here) */
    }
    s->busy = false;
    if (s->free_me) {
        sess_free(s);
        return;
    }
    sess_pump(s);
}

static void tr_data(struct upconn *tr, char *p, uint32_t n)
{
    struct h2u_sess *s = tr->user;
    ssize_t rc;

    s->busy = true; /* (callbacks may close the connection: it is freed after) */
    rc = nghttp2_session_mem_recv(s->ng, (const uint8_t *)p, n);
    for (struct list_node *l = s->streams.next, *next; l != &s->streams && !s->free_me; l = next) {
        struct h2u_stream *st = container_of(l, struct h2u_stream, link);
        next = l->next;
        if (st->flush && st->up.ops && !st->resp_done && st->up.ops->flush) {
            st->flush = false;
            st->up.ops->flush(&st->up); /* (may close this stream: `next` was taken) */
        }
        st->flush = false;
    }
    s->busy = false;
    if (s->free_me) {
        sess_free(s);
        return;
    }
    if (rc < 0) {
        log_warn("backend %s: HTTP/2: %s", s->be->addr, nghttp2_strerror((int)rc));
        sess_close(s, -EBADMSG, "HTTP/2 protocol error");
        return;
    }
    sess_pump(s);
}

static void tr_eof(struct upconn *tr)
{
    sess_close(tr->user, -ECONNRESET, "the backend closed the HTTP/2 connection");
}

static void tr_failed(struct upconn *tr, int err, const char *what)
{
    sess_close(tr->user, err, what);
}

static void tr_sent(struct upconn *tr)
{
    sess_pump(tr->user);
}

static const struct up_ops tr_ops = {
    .ready = tr_ready,
    .sent = tr_sent,
    .data = tr_data,
    .eof = tr_eof,
    .failed = tr_failed,
};

static struct h2u_sess *sess_new(struct worker *w, struct target *t, struct backend *be, bool own)
{
    struct h2u_sess *s;
    nghttp2_settings_entry set[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_BYTES},
    };

    pthread_once(&callbacks_once, callbacks_init);
    if (!callbacks || !(s = calloc(1, sizeof(*s))))
        return NULL;
    s->w = w;
    s->be = be;
    s->own = own;
    s->idle.fn = sess_idle;
    list_init(&s->streams);
    if (nghttp2_session_client_new2(&s->ng, callbacks, s, options)) {
        free(s);
        return NULL;
    }
    if (!(s->tr = up_get_transport(w, t, be, &tr_ops, s))) {
        nghttp2_session_del(s->ng);
        free(s);
        return NULL;
    }
    s->tr->try_deadline_ms = 0;
    up_tunnel(s->tr); /* its bytes are frames, for nghttp2 */
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, set, sizeof(set) / sizeof(set[0]));
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    list_add_tail(&w->pools[be->index].h2, &s->link);
    return s;
}

/* A connection to be with room for one more stream, or none. */
static struct h2u_sess *sess_find(struct worker *w, struct backend *be)
{
    struct list_node *h = &w->pools[be->index].h2;

    for (struct list_node *n = h->next; n != h; n = n->next) {
        struct h2u_sess *s = container_of(n, struct h2u_sess, link);
        uint32_t max =
            nghttp2_session_get_remote_settings(s->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (!s->dead && !s->own && s->tr && s->n_streams < max)
            return s;
    }
    return NULL;
}

void h2u_start(struct upconn *up, bool fresh)
{
    struct h2u_stream *st = stream_of(up);
    struct h2u_sess *s = fresh ? NULL : sess_find(up->w, up->be);
    bool had = s != NULL;

    if (!s && !(s = sess_new(up->w, up->t, up->be, fresh))) {
        up->ops->failed(up, -ENOMEM, "out of memory");
        return;
    }
    timer_disarm(s->w->tw, &s->idle);
    list_add_tail(&s->streams, &st->link);
    s->n_streams++;
    s->idle_ms = up->t->idle_timeout_ms;
    s->tr->t = up->t; /* its timeouts are the latest stream's domain's */
    st->s = s;
    up->reused = had && s->ready; /* a connection that may have gone stale */
    if (s->ready) {
        up->state = US_READY;
        up_update_timer(up);
        if (up->ops->ready) {
            uint32_t use = up->use;
            up->ops->ready(up);
            if (!held(up, use))
                return;
        }
    }
    if (!had)
        up_start(s->tr); /* (a failure at once fails this stream too) */
    if (st->s == s && !up->sk.dead)
        stream_flush_sock(&up->sk); /* what is queued goes: its user may not flush (probes) */
}

void h2u_pool_close(struct worker *w, uint32_t i)
{
    struct list_node *h = &w->pools[i].h2;

    for (struct list_node *n = h->next, *next; n != h; n = next) {
        struct h2u_sess *s = container_of(n, struct h2u_sess, link);
        next = n->next;
        if (!s->n_streams)
            sess_close(s, 0, NULL);
        else
            s->dead = true; /* closes with its last stream */
    }
}
