/* session_h2.c: the HTTP/2 client-side session (RFC 9113), on libnghttp2 driven over the
 * engine's own buffers as wolfSSL is: the bytes a receive brought (decrypted first on TLS) go
 * into nghttp2_session_mem_recv, and the frames nghttp2_session_mem_send serialises go into
 * the connection's output; nghttp2 never touches a socket.
 *
 * Each stream is a struct h2_stream, which embeds a struct conn without a socket (c.h2s): the
 * exchange runs on it exactly as on an HTTP/1.1 connection and cannot tell. Its request head
 * is handed over as the HTTP/1.1 head it stands for ("GET /path HTTP/1.1", Host from
 * :authority, the fields, cookies joined), parsed by the same parser with the same limits;
 * its body goes to c.sk.in as the exchange expects it (as sent with a content-length, chunked
 * without one, with the trailers in the last chunk). The response writer's functions
 * (conn_head_done, conn_queue_bytes, conn_flush_out, conn_exchange_done) come here for a
 * stream: the head the exchange composed is parsed back into HEADERS (connection-specific
 * fields dropped, RFC 9113 section 8.2.2), its body is served as DATA under the client's
 * windows from c.sk.out.pending, and the exchange's end is END_STREAM.
 *
 * Flow control (nghttp2's automatic WINDOW_UPDATE is off): a stream's request bytes are
 * acknowledged only once they left for the backend and the backend's connection is not
 * backed up, so a slow backend holds at most one stream window per stream here. Responses
 * hold the backend back once a stream buffers WINDOW_BYTES, as an HTTP/1.1 client does.
 *
 * Attacks (README "HTTP/2"): nghttp2 1.52 as Debian ships it bounds CONTINUATION frames
 * (max_continuations), SETTINGS entries, queued PING and SETTINGS acknowledgements, and the
 * rate of RST_STREAM. On top of that each connection keeps a budget of "glitches" (streams
 * the client reset before their answer, empty DATA frames, PING and SETTINGS frames,
 * PRIORITY frames, header lists past the limits): past H2_GLITCH_BUDGET within
 * H2_GLITCH_WINDOW_MS it gets GOAWAY ENHANCE_YOUR_CALM and closes.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../tls/tls.h"
#include "h2common.h"
#include "internal.h"
#include "log.h"

#define H2_OUT_HIGH (64u * 1024)       /* frames serialised ahead of the socket */
#define H2_TLS_BATCH (16u * 1024)      /* plaintext gathered into one TLS record */
#define H2_STREAM_WINDOW 65535u        /* SETTINGS_INITIAL_WINDOW_SIZE: the default */
#define H2_CONN_WINDOW_MAX (16u << 20) /* the connection's window: streams x stream window */
#define H2_GLITCH_BUDGET 1000u
#define H2_GLITCH_WINDOW_MS 10000u
#define H2_WRITE_TIMEOUT_MS 10000u /* a connection whose client takes no byte of its output */

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof(PREFACE) - 1)

struct h2_session {
    struct conn *c; /* the client connection */
    nghttp2_session *ng;
    struct list_node streams; /* struct h2_stream.link: those with a live conn */
    uint32_t n_streams;
    bool busy;      /* inside nghttp2 (mem_recv or mem_send): output waits for its return */
    bool want_pump; /* output was asked for while busy */
    bool goaway;    /* a GOAWAY went out (drain): the connection ends with its last stream */
    bool calm;      /* ENHANCE_YOUR_CALM sent: input is ignored from now on */
    uint32_t glitches;
    uint64_t glitch_since_ms;
    int32_t max_id; /* the highest stream id the client opened */
    char *framebuf; /* nghttp2's outbound frame buffer (its one big allocation) */
    size_t framebuf_len;
    bool trimmed;      /* idle: its pages were given back */
    int32_t reset[16]; /* streams lately reset here: their late HEADERS are not an error */
    uint8_t n_reset;
    nghttp2_mem mem;        /* its allocator (mem_*): user data is this session */
    struct list_node dirty; /* in w->h2_dirty: its streams have output for the pass's end */
    bool is_dirty;
};

struct h2_stream {
    struct conn c; /* first: what the exchange sees; c.sk has no socket (fd -1) */
    struct h2_session *h;
    struct list_node link;
    int32_t id;
    uint8_t method_id;
    uint16_t bad;       /* the status to answer instead of running the request (431, 400) */
    bool chunked;       /* the body goes to the exchange chunked (no content-length) */
    bool in_end;        /* END_STREAM received */
    bool resp_started;  /* the final response's HEADERS were submitted */
    bool resp_done;     /* its body is whole: END_STREAM once c.sk.out.pending is sent */
    bool deferred;      /* the data source waits for bytes (nghttp2_session_resume_data) */
    bool answered_body; /* the response carries a body (a data source) */
    bool has_length;    /* the request carries content-length */
    uint32_t n_fields, field_bytes;
    uint32_t write_timeout_ms; /* its domain's, kept for after the exchange ended */
    uint64_t unacked;          /* DATA bytes received and not yet given back as window */
    /* the request as its fields arrive: pseudo-header values, then "name: value\r\n" lines */
    struct buf acc;
    uint32_t m_off, m_len, p_off, p_len, a_off, a_len;
    struct buf cookie, trailers;
    struct buf resp_trailers; /* the response's, as (name length, value length, name, value) */
};

static struct h2_stream *stream_of(struct conn *c)
{
    return container_of(c, struct h2_stream, c);
}

static void h2_pump(struct h2_session *h);
static void session_timeout(struct timer *t, uint64_t now);

/* A stream's output (from its exchange: a backend's bytes) goes out at the end of the loop
 * pass (h2_tick), with every other stream's of that pass: one TLS record and one send for
 * all of them, not one per stream. */
static void h2_pump_later(struct h2_session *h)
{
    if (h->is_dirty)
        return;
    h->is_dirty = true;
    list_add_tail(&h->c->w->h2_dirty, &h->dirty);
}

void h2_tick(struct worker *w)
{
    while (!list_empty(&w->h2_dirty)) {
        struct h2_session *h = container_of(w->h2_dirty.next, struct h2_session, dirty);
        list_del(&h->dirty);
        h->is_dirty = false;
        h2_pump(h);
    }
}
static void stream_timeout(struct timer *t, uint64_t now);

/* ---- glitches ---------------------------------------------------------------------------- */

/* Counts one suspicious event; past the budget the connection is told to calm down and
 * ends. Returns false then. */
static bool glitch(struct h2_session *h, const char *what)
{
    struct worker *w = h->c->w;

    if (w->now_ms - h->glitch_since_ms > H2_GLITCH_WINDOW_MS) {
        h->glitch_since_ms = w->now_ms;
        h->glitches = 0;
    }
    if (++h->glitches <= H2_GLITCH_BUDGET || h->calm)
        return !h->calm;
    h->calm = true;
    ctr_add(&w->h2_calm, 1);
    log_debug("HTTP/2: %s past the budget: GOAWAY ENHANCE_YOUR_CALM", what);
    nghttp2_session_terminate_session2(h->ng, nghttp2_session_get_last_proc_stream_id(h->ng),
                                       NGHTTP2_ENHANCE_YOUR_CALM);
    return false;
}

/* ---- streams ----------------------------------------------------------------------------- */

static void stream_release(struct sock *s)
{
    struct h2_stream *st = stream_of((struct conn *)s);

    buf_free(&st->acc);
    buf_free(&st->cookie);
    buf_free(&st->trailers);
    buf_free(&st->resp_trailers);
    free(st);
}

static const struct sock_ops stream_sock_ops = {.release = stream_release};

static struct h2_stream *stream_new(struct h2_session *h, int32_t id)
{
    struct conn *sc = h->c;
    struct h2_stream *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    sock_init(&st->c.sk, -1, &stream_sock_ops);
    st->c.sk.tm.fn = stream_timeout;
    st->c.w = sc->w;
    st->c.h2s = true;
    st->c.peer = sc->peer;
    st->c.tls = sc->tls; /* borrowed: for X-Forwarded-Proto and the log; never freed here */
    st->c.ex = &sc->w->no_ex;
    st->c.head_start_ms = sc->w->now_ms;
    st->h = h;
    st->id = id;
    list_add(&h->streams, &st->link);
    h->n_streams++;
    ctr_add(&sc->w->h2_streams, 1);
    return st;
}

/* The stream leaves its session (the session forgets it); its conn lives on while its
 * exchange does (stream_unlink kills it). */
static void stream_detach(struct h2_stream *st)
{
    struct h2_session *h = st->h;

    if (!h)
        return;
    nghttp2_session_set_stream_user_data(h->ng, st->id, NULL);
    if (st->unacked) /* the connection's window for bytes nobody will read */
        nghttp2_session_consume_connection(h->ng, (size_t)st->unacked);
    st->unacked = 0;
    list_del(&st->link);
    h->n_streams--;
    st->h = NULL;
    conn_update_timer(h->c);
}

/* The stream is over: its conn is freed at the end of the loop pass (the worker's
 * graveyard), like a socket; its exchange was ended by the caller. */
static void stream_unlink(struct h2_stream *st)
{
    stream_detach(st);
    sock_kill(st->c.w, &st->c.sk);
}

/* The exchange side gives up on the stream (conn_close on it): RST_STREAM. */
void h2s_close(struct conn *c)
{
    struct h2_stream *st = stream_of(c);
    struct h2_session *h = st->h;

    if (c->sk.dead)
        return;
    ex_abort(c);
    if (h) {
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        stream_unlink(st);
        h2_pump(h);
    } else {
        sock_kill(c->w, &c->sk);
    }
}

/* The response is whole once the exchange ended after submitting its head. */
static void stream_settle(struct h2_stream *st)
{
    struct h2_session *h = st->h;

    if (!h || st->c.sk.dead || st->resp_done || !st->resp_started || ex_active(st->c.ex))
        return;
    st->resp_done = true;
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(h->ng, st->id);
    }
}

/* The stream's request bytes moved on: gives their window back unless the backend's
 * connection is backed up (ex_upstream_sent then calls conn_resume_input). */
static void stream_ack(struct h2_stream *st)
{
    struct conn *c = &st->c;
    const struct exchange *ex = c->ex;

    if (!st->h || !st->unacked || buf_used(&c->sk.in))
        return;
    if (ex_active(ex) && ex->up && outq_bytes(&ex->up->sk.out) > WINDOW_BYTES) {
        c->recv_paused = true;
        return;
    }
    nghttp2_session_consume(st->h->ng, st->id, (size_t)st->unacked);
    st->unacked = 0;
}

void h2s_process(struct conn *c)
{
    struct h2_stream *st = stream_of(c);

    if (c->sk.dead)
        return;
    if (!st->h) { /* the client has its whole answer: the exchange ends on its own */
        if (!ex_active(c->ex))
            sock_kill(c->w, &c->sk);
        return;
    }
    if (ex_active(c->ex)) {
        if (c->ex->t)
            st->write_timeout_ms = c->ex->t->write_timeout_ms;
        ex_feed_body(c);
    }
    if (c->sk.dead)
        return;
    if (!ex_active(c->ex) && buf_used(&c->sk.in)) { /* answered: the rest is not read */
        buf_consume(&c->sk.in, buf_used(&c->sk.in));
    }
    if (!c->recv_paused)
        stream_ack(st);
    stream_settle(st);
    conn_update_timer(c);
    if (st->h)
        h2_pump_later(st->h);
}

uint32_t h2s_write_timeout_ms(struct conn *c)
{
    uint32_t ms = stream_of(c)->write_timeout_ms;

    return ms ? ms : 10000;
}

void h2s_resume_input(struct conn *c)
{
    c->recv_paused = false;
    h2s_process(c);
}

void h2s_exchange_done(struct conn *c)
{
    h2s_process(c);
}

void h2s_queue(struct conn *c, const void *p, uint32_t n)
{
    struct h2_stream *st = stream_of(c);

    if (c->sk.dead || !st->h)
        return;
    if (buf_append(&c->sk.out.pending, p, n)) {
        h2s_close(c);
        return;
    }
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h->ng, st->id);
    }
}

void h2s_flush(struct conn *c)
{
    struct h2_stream *st = stream_of(c);

    if (c->sk.dead || !st->h)
        return;
    stream_settle(st);
    h2_pump_later(st->h);
}

void h2s_trailers(struct conn *c, const struct h1_header *f, uint32_t n)
{
    struct h2_stream *st = stream_of(c);
    bool ok = true;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t len[2] = {f[i].name_len, f[i].value_len};
        if (f[i].hop || f[i].kind == H1_H_CONTENT_LENGTH || !f[i].name_len || f[i].name[0] == ':')
            continue;
        buf_put(&st->resp_trailers, &ok, len, sizeof(len));
        buf_put(&st->resp_trailers, &ok, f[i].name, f[i].name_len);
        buf_put(&st->resp_trailers, &ok, f[i].value, f[i].value_len);
    }
    if (!ok)
        h2s_close(c);
}

/* The response's trailers as HEADERS with END_STREAM; false when they could not be. */
static bool stream_send_trailers(struct h2_stream *st)
{
    nghttp2_nv nv[H1_HEADERS_CAP];
    char *p = buf_data(&st->resp_trailers), *end = p + buf_used(&st->resp_trailers);
    size_t n = 0;

    while (p < end && n < H1_HEADERS_CAP) {
        uint32_t len[2];
        memcpy(len, p, sizeof(len));
        p += sizeof(len);
        h2_lower(p, len[0]);
        nv[n++] =
            (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + len[0], len[0], len[1], NGHTTP2_NV_FLAG_NONE};
        p += len[0] + len[1];
    }
    return nghttp2_submit_trailer(st->h->ng, st->id, nv, n) == 0;
}

/* nghttp2's data source: the response body from c.sk.out.pending. */
static ssize_t stream_read(nghttp2_session *ng, int32_t id, uint8_t *out, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    struct buf *b;
    uint32_t n;

    (void)src;
    (void)user;
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream's exchange is gone */
    b = &st->c.sk.out.pending;
    n = buf_used(b) < len ? buf_used(b) : (uint32_t)len;
    if (n) {
        memcpy(out, buf_data(b), n);
        buf_consume(b, n);
        if (buf_used(b) < WINDOW_BYTES / 2)
            ex_backend_resume(&st->c); /* the client caught up: read the backend again */
        conn_update_timer(&st->c);
    }
    if (!buf_used(b) && st->resp_done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (buf_used(&st->resp_trailers) && stream_send_trailers(st))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers' HEADERS ends it */
    } else if (!n) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return n;
}

/* Whether a response field is connection-specific (RFC 9113 section 8.2.2) or one HTTP/2
 * frames itself. */
static bool resp_field_dropped(const struct h1_header *f)
{
    return f->hop || f->kind == H1_H_TRANSFER_ENCODING;
}

/* The exchange composed a response head (HTTP/1.1 text in the worker's scratch buffer, any
 * body bytes after it): it becomes HEADERS, the bytes after it the first DATA. */
void h2s_head_done(struct conn *c, bool ok)
{
    struct h2_stream *st = stream_of(c);
    struct buf *b = &c->w->scratch;
    struct h1_header hdrs[H1_HEADERS_CAP];
    struct h1_response r = {.headers = hdrs, .headers_cap = H1_HEADERS_CAP};
    struct h1_limits lim = {buf_used(b), H1_HEADERS_CAP, 0};
    nghttp2_nv nv[H1_HEADERS_CAP + 1];
    nghttp2_data_provider prd = {.read_callback = stream_read};
    char status[8];
    size_t n = 0;
    int rc = -EBADMSG;

    if (ok && !c->sk.dead && st->h)
        rc = h1_parse_response(buf_data(b), buf_used(b), &r, &lim, st->method_id);
    if (rc < 0) {
        b->off = b->len = 0;
        if (!c->sk.dead)
            h2s_close(c);
        return;
    }
    status[0] = (char)('0' + r.status / 100 % 10);
    status[1] = (char)('0' + r.status / 10 % 10);
    status[2] = (char)('0' + r.status % 10);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (uint32_t i = 0; i < r.n_headers; i++) {
        struct h1_header *f = &r.headers[i];
        if (resp_field_dropped(f))
            continue;
        h2_lower((char *)f->name, f->name_len);
        nv[n++] = (nghttp2_nv){(uint8_t *)f->name, (uint8_t *)f->value, f->name_len, f->value_len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    if (r.status < 200) { /* interim: passed on, the final one follows */
        nghttp2_submit_headers(st->h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL);
        b->off = b->len = 0;
        return;
    }
    if ((uint32_t)rc < buf_used(b) &&
        buf_append(&c->sk.out.pending, buf_data(b) + rc, buf_used(b) - (uint32_t)rc)) {
        b->off = b->len = 0;
        h2s_close(c);
        return;
    }
    b->off = b->len = 0;
    st->resp_started = true;
    st->answered_body = r.body != H1_BODY_NONE;
    if (nghttp2_submit_response(st->h->ng, st->id, nv, n, st->answered_body ? &prd : NULL))
        h2s_close(c);
}

/* A stream's timer (conn_update_timer decides its deadline as for any connection): a
 * client that never opens its window, a body that stopped arriving, a head that did not
 * complete. */
static void stream_timeout(struct timer *t, uint64_t now)
{
    struct conn *c = container_of(t, struct conn, sk.tm);
    struct exchange *ex = c->ex;

    (void)now;
    if (ex->state == EX_CACHE_WAIT && pc_wait_deadline(ex)) {
        pc_wait_expired(c);
        return;
    }
    if (!outq_bytes(&c->sk.out) && ex_active(ex) && !ex->req_done && !ex_resp_started(ex)) {
        respond_error(c, 408); /* the client stopped sending its body */
        ex_abort(c);
        h2s_process(c);
        return;
    }
    if (outq_bytes(&c->sk.out))
        ctr_add(&c->w->h2_write_timeouts, 1);
    h2s_close(c);
}

/* ---- the request as it arrives ----------------------------------------------------------- */

static bool span_is(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* Where a pseudo-header's value lands in st->acc. */
static void keep_pseudo(struct h2_stream *st, const uint8_t *v, size_t vn, uint32_t *off,
                        uint32_t *len)
{
    *off = buf_used(&st->acc);
    *len = (uint32_t)vn;
    if (buf_append(&st->acc, v, (uint32_t)vn))
        st->bad = 500;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name, size_t nn,
                     const uint8_t *value, size_t vn, uint8_t flags, void *user)
{
    struct h2_session *h = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
    const struct snapshot *snap = h->c->w->snap;
    bool ok = true;

    (void)flags;
    if (!st || st->bad)
        return 0;
    /* RFC 7541's accounting (32 bytes per field), against max_header_bytes as an HTTP/1.1
     * head is: a small block that decodes to a huge list (an HPACK bomb) stops here */
    st->field_bytes += (uint32_t)(nn + vn + 32);
    if (st->field_bytes > snap->lim.max_head_bytes || ++st->n_fields > snap->lim.max_headers) {
        st->bad = 431;
        buf_free(&st->acc);
        buf_free(&st->cookie);
        buf_free(&st->trailers);
        ctr_add(&h->c->w->h2_big_headers, 1);
        return glitch(h, "header lists past the limits") ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (fr->headers.cat == NGHTTP2_HCAT_HEADERS) { /* trailers: only a chunked body has room */
        if (st->chunked) {
            buf_put(&st->trailers, &ok, name, nn);
            buf_put(&st->trailers, &ok, ": ", 2);
            buf_put(&st->trailers, &ok, value, vn);
            buf_put(&st->trailers, &ok, "\r\n", 2);
        }
    } else if (nn && name[0] == ':') {
        if (span_is(name, nn, ":method"))
            keep_pseudo(st, value, vn, &st->m_off, &st->m_len);
        else if (span_is(name, nn, ":path"))
            keep_pseudo(st, value, vn, &st->p_off, &st->p_len);
        else if (span_is(name, nn, ":authority"))
            keep_pseudo(st, value, vn, &st->a_off, &st->a_len);
        /* :scheme is the client's: X-Forwarded-Proto says how it came here */
    } else if (span_is(name, nn, "cookie")) { /* RFC 9113 section 8.2.3: joined again */
        if (buf_used(&st->cookie))
            buf_put(&st->cookie, &ok, "; ", 2);
        if (vn) /* (an empty first one would copy 0 bytes to a buffer not allocated yet) */
            buf_put(&st->cookie, &ok, value, vn);
    } else {
        st->has_length |= span_is(name, nn, "content-length");
        buf_put(&st->acc, &ok, name, nn);
        buf_put(&st->acc, &ok, ": ", 2);
        buf_put(&st->acc, &ok, value, vn);
        buf_put(&st->acc, &ok, "\r\n", 2);
    }
    if (!ok)
        st->bad = 500;
    return 0;
}

static bool reset_lately(const struct h2_session *h, int32_t id)
{
    for (uint32_t i = 0; i < sizeof(h->reset) / sizeof(h->reset[0]); i++)
        if (h->reset[i] == id)
            return true;
    return false;
}

/* Stream ids going backwards, or reused after their stream closed: nghttp2 1.52 ignores such
 * a HEADERS (it cannot tell them from trailers that crossed a RST_STREAM); RFC 9113 section
 * 5.1.1 makes them a connection error. Only a stream reset here lately is given the benefit
 * of the doubt. */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user)
{
    struct h2_session *h = user;
    nghttp2_stream *s;

    if (hd->type != NGHTTP2_HEADERS || !(hd->stream_id & 1) || hd->stream_id > h->max_id)
        return 0;
    s = nghttp2_session_find_stream(ng, hd->stream_id);
    if (s && nghttp2_stream_get_state(s) != NGHTTP2_STREAM_STATE_CLOSED)
        return 0; /* trailers, or nghttp2's own error for a half-closed stream */
    if (reset_lately(h, hd->stream_id))
        return 0;
    ctr_add(&h->c->w->h2_protocol_errors, 1);
    nghttp2_session_terminate_session(ng, NGHTTP2_PROTOCOL_ERROR);
    h->calm = true; /* nothing more is read */
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct h2_session *h = user;
    struct h2_stream *st;

    if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (fr->hd.stream_id > h->max_id)
        h->max_id = fr->hd.stream_id;
    if (h->calm)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (!(st = stream_new(h, fr->hd.stream_id)))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* out of memory: this stream is reset */
    nghttp2_session_set_stream_user_data(ng, fr->hd.stream_id, st);
    h->c->nreq++;
    return 0;
}

/* Whether the field lines in acc (after the pseudo-headers) hold a host field; its value in
 * *v. */
static bool find_host(const struct buf *acc, uint32_t from, const char **v, uint32_t *vn)
{
    const char *p = buf_data(acc) + from, *end = buf_data(acc) + buf_used(acc);

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if (eol - p >= 6 && memcmp(p, "host: ", 6) == 0) {
            *v = p + 6;
            *vn = (uint32_t)(eol - 1 - *v);
            return true;
        }
        p = eol + 1;
    }
    return false;
}

/* The request's fields are whole: its HTTP/1.1 head is composed, parsed and started. */
static void stream_begin(struct h2_stream *st, bool end_stream)
{
    struct conn *c = &st->c;
    struct worker *w = c->w;
    struct h1_header hdrs[H1_HEADERS_CAP];
    struct h1_request r = {.headers = hdrs, .headers_cap = H1_HEADERS_CAP};
    struct buf *head = &c->w->synth; /* reused: one head is composed at a time */
    const char *acc, *hv;
    uint32_t fields = st->m_len + st->p_len + st->a_len, hn;
    int status = 400, rc;
    bool ok = true;

    head->off = head->len = 0;

    st->in_end = end_stream;
    if (!st->bad && st->a_len && find_host(&st->acc, fields, &hv, &hn) &&
        (hn != st->a_len || strncasecmp(hv, buf_data(&st->acc) + st->a_off, hn) != 0))
        st->bad = 400; /* RFC 9113 section 8.3.1: Host and :authority must agree */
    if (st->bad) {
        ctr_add(&w->errors, 1);
        respond_error(c, st->bad);
        h2s_process(c);
        return;
    }
    acc = buf_data(&st->acc); /* (after the 431's buf_free, its data pointer is NULL) */
    /* CONNECT has no :path: its target is the authority (and start_exchange refuses it) */
    buf_put(head, &ok, acc + st->m_off, st->m_len);
    buf_put(head, &ok, " ", 1);
    if (st->p_len)
        buf_put(head, &ok, acc + st->p_off, st->p_len);
    else
        buf_put(head, &ok, acc + st->a_off, st->a_len);
    buf_put(head, &ok, " HTTP/1.1\r\n", 11);
    if (st->a_len && !find_host(&st->acc, fields, &hv, &hn)) {
        buf_put(head, &ok, "host: ", 6);
        buf_put(head, &ok, acc + st->a_off, st->a_len);
        buf_put(head, &ok, "\r\n", 2);
    }
    buf_put(head, &ok, acc + fields, buf_used(&st->acc) - fields);
    if (buf_used(&st->cookie)) {
        buf_put(head, &ok, "cookie: ", 8);
        buf_put(head, &ok, buf_data(&st->cookie), buf_used(&st->cookie));
        buf_put(head, &ok, "\r\n", 2);
    }
    /* a body without content-length goes on chunked (HTTP/2 has no transfer-encoding) */
    if (!end_stream && !st->has_length) {
        st->chunked = true;
        buf_put(head, &ok, "transfer-encoding: chunked\r\n", 28);
    }
    buf_put(head, &ok, "\r\n", 2);
    buf_free(&st->acc);
    buf_free(&st->cookie);
    rc =
        ok ? h1_parse_request(buf_data(head), buf_used(head), &r, &w->snap->lim, &status) : -ENOMEM;
    if (rc == -EAGAIN) /* (cannot be: the head ends with its empty line) */
        rc = -EBADMSG;
    if (rc >= 0 && end_stream && r.body != H1_BODY_NONE) {
        rc = -EBADMSG; /* a content-length past a request that ended (nghttp2 checks DATA) */
        status = 400;
    }
    if (rc < 0) {
        ctr_add(&w->errors, 1);
        respond_error(c, rc == -ENOMEM ? 500 : status);
        h2s_process(c);
        return;
    }
    st->method_id = r.method_id;
    ex_start(c, &r, buf_data(head), (uint32_t)rc);
    h2s_process(c);
}

/* Request body bytes: to the exchange, framed as its head said. */
static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    struct conn *c;
    char line[24];
    bool ok = true;

    (void)flags;
    (void)user;
    if (!st || st->c.sk.dead || !ex_active(st->c.ex)) {
        /* nobody reads it (the answer went out first): its window comes back at once */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    c = &st->c;
    if (st->chunked) {
        int k = snprintf(line, sizeof(line), "%zx\r\n", len);
        buf_put(&c->sk.in, &ok, line, (size_t)k);
    }
    buf_put(&c->sk.in, &ok, data, len);
    if (st->chunked)
        buf_put(&c->sk.in, &ok, "\r\n", 2);
    st->unacked += len;
    if (!ok) {
        h2s_close(c);
        return 0;
    }
    h2s_process(c);
    return 0;
}

/* END_STREAM: a chunked body gets its last chunk, with the trailers if any. */
static void stream_end_input(struct h2_stream *st)
{
    struct conn *c = &st->c;
    bool ok = true;

    st->in_end = true;
    if (!st->chunked || c->sk.dead || !ex_active(c->ex))
        return;
    buf_put(&c->sk.in, &ok, "0\r\n", 3);
    if (buf_used(&st->trailers)) /* (an empty one has no data pointer to copy from) */
        buf_put(&c->sk.in, &ok, buf_data(&st->trailers), buf_used(&st->trailers));
    buf_put(&c->sk.in, &ok, "\r\n", 2);
    buf_free(&st->trailers);
    if (!ok) {
        h2s_close(c);
        return;
    }
    h2s_process(c);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct h2_session *h = user;
    struct h2_stream *st =
        fr->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id) : NULL;
    bool end = fr->hd.flags & NGHTTP2_FLAG_END_STREAM;

    switch (fr->hd.type) {
    case NGHTTP2_HEADERS:
        if (!st)
            break;
        if (fr->headers.cat == NGHTTP2_HCAT_REQUEST)
            stream_begin(st, end);
        else if (end)
            stream_end_input(st);
        break;
    case NGHTTP2_DATA: /* (its bytes came through on_data_chunk) */
        if (!fr->hd.length && !end && !glitch(h, "empty DATA frames"))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (st && end)
            stream_end_input(st);
        break;
    case NGHTTP2_PING:
        if (!(fr->hd.flags & NGHTTP2_FLAG_ACK) && !glitch(h, "PING frames"))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_SETTINGS:
        if (!(fr->hd.flags & NGHTTP2_FLAG_ACK) && !glitch(h, "SETTINGS frames"))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_PRIORITY:
        if (!glitch(h, "PRIORITY frames"))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_RST_STREAM:
        /* a stream reset before its answer: the cost of rapid reset (CVE-2023-44487) */
        if (st && !st->resp_done) {
            ctr_add(&h->c->w->h2_resets, 1);
            if (!glitch(h, "streams reset by the client"))
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* The answer went out whole while the request's body still comes: RST_STREAM NO_ERROR tells
 * the client to stop sending it (RFC 9113 section 8.1). */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct h2_session *h = user;
    struct h2_stream *st;

    if (fr->hd.type == NGHTTP2_RST_STREAM) {
        h->reset[h->n_reset++ % (sizeof(h->reset) / sizeof(h->reset[0]))] = fr->hd.stream_id;
        return 0;
    }
    if ((fr->hd.type != NGHTTP2_DATA && fr->hd.type != NGHTTP2_HEADERS) ||
        !(fr->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    st = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
    if (st && !st->in_end)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, fr->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t err, void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);

    (void)err;
    (void)user;
    if (!st)
        return 0;
    if (ex_active(st->c.ex) && st->resp_started && !st->answered_body) {
        /* a head without a body (HEAD, 204, 304) is all the client needed; the exchange
         * ends as it would have, so its backend connection goes back to its pool */
        stream_detach(st);
        return 0;
    }
    if (ex_active(st->c.ex)) /* reset by the client, or by nghttp2 (a protocol error) */
        ex_abort(&st->c);
    stream_unlink(st);
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *fr, int err, void *user)
{
    struct h2_session *h = user;

    (void)ng;
    (void)fr;
    (void)err;
    ctr_add(&h->c->w->h2_protocol_errors, 1);
    return glitch(h, "invalid frames") ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* ---- the session ------------------------------------------------------------------------- */

/* nghttp2's allocations, through the session: its outbound frame buffer (16 KiB, written for
 * every frame sent, read by nobody between frames) is noted, so that an idle connection can
 * give its pages back (h2_trim). */
static void *mem_malloc(size_t n, void *user)
{
    struct h2_session *h = user;
    void *p = malloc(n);

    if (p && n >= 16384) {
        h->framebuf = p;
        h->framebuf_len = n;
    }
    return p;
}

static void mem_free(void *p, void *user)
{
    struct h2_session *h = user;

    if (p && p == h->framebuf)
        h->framebuf = NULL;
    free(p);
}

static void *mem_calloc(size_t k, size_t n, void *user)
{
    (void)user;
    return calloc(k, n);
}

static void *mem_realloc(void *p, size_t n, void *user)
{
    struct h2_session *h = user;
    void *q = realloc(p, n);

    if (q && (n >= 16384 || (p && p == h->framebuf))) {
        h->framebuf = n >= 16384 ? q : NULL;
        h->framebuf_len = n;
    }
    return q;
}

/* An idle connection (no stream, nothing to send) costs its structs, not its buffers: the
 * connection's own are freed, and the whole pages inside nghttp2's frame buffer go back to
 * the kernel (MADV_DONTNEED: zero pages when next written). */
static void h2_trim(struct conn *c)
{
    struct h2_session *h = c->h2;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t from, to;

    if (h->trimmed || c->sk.out.busy || nghttp2_session_want_write(h->ng))
        return;
    h->trimmed = true;
    buf_free(&c->sk.in);
    buf_free(&c->sk.out.sending);
    buf_free(&c->sk.out.pending);
    if (!h->framebuf || page <= 0)
        return;
    from = ((uintptr_t)h->framebuf + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    to = ((uintptr_t)h->framebuf + h->framebuf_len) & ~((uintptr_t)page - 1);
    if (to > from)
        madvise((void *)from, to - from, MADV_DONTNEED);
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

static void callbacks_init(void)
{
    static const struct h2_handlers h = {
        .begin_frame = on_begin_frame,
        .begin_headers = on_begin_headers,
        .header = on_header,
        .frame_recv = on_frame_recv,
        .frame_send = on_frame_send,
        .data_chunk = on_data_chunk,
        .stream_close = on_stream_close,
        .invalid_frame = on_invalid_frame,
    };

    if (h2_setup(&h, &callbacks, &options)) {
        callbacks = NULL;
        return;
    }
    /* CVE-2023-44487 (deb12u1): nghttp2's own RST_STREAM bucket stays as a backstop behind the
     * glitch budget, which counts only streams reset before their answer and says
     * ENHANCE_YOUR_CALM */
    nghttp2_option_set_stream_reset_rate_limit(options, 2 * H2_GLITCH_BUDGET, 100);
}

bool h2_session_start(struct conn *c, const char *p, uint32_t n)
{
    const rp_server_config *cfg = &c->w->snap->cfg;
    struct h2_session *h;
    nghttp2_settings_entry set[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->h2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->w->snap->lim.max_head_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    uint64_t window = (uint64_t)cfg->h2_max_concurrent_streams * H2_STREAM_WINDOW;

    pthread_once(&callbacks_once, callbacks_init);
    if (!callbacks || !options || !(h = calloc(1, sizeof(*h)))) {
        conn_close(c);
        return false;
    }
    h->c = c;
    list_init(&h->streams);
    h->glitch_since_ms = c->w->now_ms;
    h->mem = (nghttp2_mem){h, mem_malloc, mem_free, mem_calloc, mem_realloc};
    if (nghttp2_session_server_new3(&h->ng, callbacks, h, options, &h->mem)) {
        free(h);
        conn_close(c);
        return false;
    }
    c->h2 = h;
    c->h2c_ok = false;
    c->sk.tm.fn = session_timeout; /* the connection's own deadlines (h2_update_timer) */
    c->head_start_ms = c->w->now_ms;
    ctr_add(&c->w->h2_conns, 1);
    nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, set, sizeof(set) / sizeof(set[0]));
    nghttp2_session_set_local_window_size(
        h->ng, NGHTTP2_FLAG_NONE, 0,
        (int32_t)(window < H2_CONN_WINDOW_MAX ? window : H2_CONN_WINDOW_MAX));
    if (n)
        h2_on_data(c, p, n);
    else
        h2_pump(h);
    return !c->sk.dead;
}

/* The connection is over for nghttp2 (both sides said GOAWAY, or a fatal error): it closes
 * once its output is out. */
static void h2_check_done(struct h2_session *h)
{
    struct conn *c = h->c;

    if (c->close_after || c->sk.dead || (nghttp2_session_want_read(h->ng) && !h->calm) ||
        nghttp2_session_want_write(h->ng))
        return;
    c->close_after = true;
    if (!outq_bytes(&c->sk.out))
        conn_on_sent(c);
}

/* Serialises what nghttp2 has to send into the connection's output (bounded: the rest when
 * the send completes), then starts the send. */
static void h2_pump(struct h2_session *h)
{
    struct conn *c = h->c;
    struct buf *acc = &c->w->h2out;

    if (h->busy) {
        h->want_pump = true;
        return;
    }
    h->busy = true;
    do {
        h->want_pump = false;
        while (!c->sk.dead && outq_bytes(&c->sk.out) < H2_OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(h->ng, &p);
            if (n < 0) {
                log_debug("HTTP/2: %s", nghttp2_strerror((int)n));
                h->busy = false;
                conn_close(c);
                return;
            }
            if (!n)
                break;
            h->trimmed = false; /* the frame buffer was written */
            if (!c->tls) {
                conn_queue_bytes(c, p, (uint32_t)n);
                continue;
            }
            /* TLS: frames gathered into records of up to 16 KiB, not one record each */
            if (buf_append(acc, p, (uint32_t)n)) {
                h->busy = false;
                conn_close(c);
                return;
            }
            if (buf_used(acc) >= H2_TLS_BATCH) {
                conn_queue_bytes(c, buf_data(acc), buf_used(acc));
                acc->off = acc->len = 0;
            }
        }
        if (buf_used(acc) && !c->sk.dead)
            conn_queue_bytes(c, buf_data(acc), buf_used(acc));
        acc->off = acc->len = 0;
    } while (h->want_pump && !c->sk.dead);
    h->busy = false;
    if (c->sk.dead)
        return;
    conn_flush_out(c);
    h2_check_done(h);
}

void h2_on_data(struct conn *c, const char *p, uint32_t n)
{
    struct h2_session *h = c->h2;
    ssize_t rc;

    if (h->calm)
        return; /* told to calm down: nothing more is read */
    h->busy = true;
    rc = nghttp2_session_mem_recv(h->ng, (const uint8_t *)p, n);
    h->busy = false;
    if (c->sk.dead)
        return;
    if (rc < 0 && !h->calm) {
        /* a fatal error (a bad preface, a flood nghttp2 saw, a callback's failure): a GOAWAY
         * with its code goes out, then the connection closes */
        bool flood = rc == NGHTTP2_ERR_FLOODED || rc == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
        ctr_add(flood ? &c->w->h2_calm : &c->w->h2_protocol_errors, 1);
        log_debug("HTTP/2 connection failed: %s", nghttp2_strerror((int)rc));
        nghttp2_session_terminate_session(h->ng, flood ? NGHTTP2_ENHANCE_YOUR_CALM
                                                       : NGHTTP2_PROTOCOL_ERROR);
        h->calm = true;
    }
    if (h->calm) /* nothing more is read: what was asked is not answered */
        h2_abort_streams(c);
    h2_pump(h);
    if (!c->sk.dead)
        conn_update_timer(c);
}

void h2_on_sent(struct conn *c)
{
    h2_pump(c->h2);
}

/* Every stream's exchange ends (the connection closes). */
void h2_abort_streams(struct conn *c)
{
    struct h2_session *h = c->h2;

    while (!list_empty(&h->streams)) {
        struct h2_stream *st = container_of(h->streams.next, struct h2_stream, link);
        ex_abort(&st->c);
        stream_unlink(st);
    }
}

void h2_session_free(struct conn *c)
{
    struct h2_session *h = c->h2;

    if (!h)
        return;
    h2_abort_streams(c); /* (none left: conn_close ended them) */
    if (h->is_dirty)
        list_del(&h->dirty);
    nghttp2_session_del(h->ng);
    free(h);
    c->h2 = NULL;
}

/* Drain: GOAWAY with the last stream id taken; streams in flight finish, then it closes. */
void h2_drain(struct conn *c)
{
    struct h2_session *h = c->h2;

    if (h->goaway)
        return;
    h->goaway = true;
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_pump(h);
}

static void session_timeout(struct timer *t, uint64_t now)
{
    struct conn *c = container_of(t, struct conn, sk.tm);

    (void)now;
    conn_close(c);
}

/* The connection's own deadline: output its client does not take, or idle without streams
 * (header_timeout before the first one, keepalive_timeout after). Streams have their own. */
void h2_update_timer(struct conn *c)
{
    struct worker *w = c->w;
    struct h2_session *h = c->h2;
    const rp_server_config *cfg = &w->snap->cfg;
    uint64_t deadline = 0;

    if (outq_bytes(&c->sk.out)) {
        deadline = w->now_ms + H2_WRITE_TIMEOUT_MS;
    } else if (!h->n_streams) {
        deadline = c->nreq ? w->now_ms + cfg->keepalive_timeout_ms
                           : c->head_start_ms + cfg->header_timeout_ms;
        h2_trim(c);
    } else {
        h->trimmed = false;
    }
    if (!deadline)
        timer_disarm(w->tw, &c->sk.tm);
    else if (!timer_armed(&c->sk.tm) || c->sk.tm.deadline_ms != deadline)
        timer_arm(w->tw, &c->sk.tm, deadline);
}

/* h2c: whether a plain connection's first bytes p[0..n) are (so far) the client preface:
 * 1 yes, 0 not yet known (a prefix), -1 no. */
int h2_preface_match(const char *p, uint32_t n)
{
    uint32_t k = n < PREFACE_LEN ? n : (uint32_t)PREFACE_LEN;

    if (memcmp(p, PREFACE, k))
        return -1;
    return n >= PREFACE_LEN ? 1 : 0;
}
