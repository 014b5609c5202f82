/* h2_stubs.h: the world the HTTP/2 session (session_h2.c) runs in, for its unit tests
 * (test_session_h2.c) and its fuzz target (tests/fuzz/fuzz_h2_session.c). Each #includes
 * session_h2.c, defines STUB_CHECK(x) (a cmocka assertion, or fuzz.h's CHECK) and the plan
 * hook below, then includes this file once.
 *
 * Real: session_h2.c, libnghttp2, and what session_h2.c calls from buf.c, h1.c, log.c,
 * timer.c and util.c (the unit test links them from libringproxy.a, which call nothing
 * stubbed here; the fuzz target compiles them in). Stubbed, so that no other engine object is
 * linked (test_exchange.c's header says why a partial stub would be a link error):
 *  - worker.c's sockets: sock_init, and sock_kill with a graveyard that graveyard_run()
 *    frees as the worker does at the end of a loop pass (buffers, then ops->release);
 *  - session_h1.c's connection and response-writer functions, each written as session_h1.c
 *    writes it: a stream (c->h2s) is handed to session_h2.c's h2s_*, the client connection's
 *    output is an outq whose send the test completes with client_took();
 *  - the exchange (exchange.c, respond.c, pcache.c): a fake (struct fake_ex) that reads a
 *    request body as ex_feed_body does and answers through the real writer path (a head in
 *    conn_head_buf, conn_head_done, conn_queue_bytes, conn_flush_out, conn_exchange_done) as
 *    its struct plan says: at once from ex_start, after the body, or step by step later.
 * What they saw is in S; the checks of the world's end (world_fini) are invariants: every
 * exchange ended, every stream conn freed with its exchange gone, no timer left armed.
 */
#ifndef RP_TEST_H2_STUBS_H
#define RP_TEST_H2_STUBS_H

#include <stdlib.h>
#include <string.h>

#ifndef STUB_CHECK
#error "define STUB_CHECK(x) before including h2_stubs.h"
#endif

/* When a fake exchange answers. */
enum plan_when {
    ANSWER_NOW,        /* from ex_start: head, body and end at once (a cache hit's timing) */
    ANSWER_AFTER_BODY, /* at the next fakes_progress() once the request body is whole */
    ANSWER_LATER,      /* at the next fakes_progress(), body or not */
    ANSWER_HEAD_NOW,   /* the head from ex_start, the body at later fakes_progress() steps */
};

/* How a fake exchange answers its request. */
struct plan {
    uint8_t when;        /* enum plan_when */
    const char *head;    /* the response head as the exchange composes it, and any bytes
                            after it (they go out as its first DATA); NULL: "200, 0 bytes" */
    const char *interim; /* a 1xx head written first, NULL: none */
    const char *body;    /* body bytes queued after the head; NULL: body_len filler bytes */
    uint32_t body_len;   /* how many */
    uint32_t piece;      /* bytes queued per progress step (0: all at once) */
    bool bad_head;       /* conn_head_done(c, false): composing the head ran out of memory */
    bool fail_mid_body;  /* the backend fails after the first body bytes: conn_close */
    bool backed_up;      /* its backend connection is backed up until the next step */
    uint32_t cache_wait; /* ms parked behind a cache fill first (pc_wait_* decide), 0: not */
    uint64_t max_body;   /* a request body past it is answered 413 by ex_feed_body, 0: none */
};

/* The includer's: the plan of the request ex_start was just given (k counts from 0). */
static struct plan plan_for(uint32_t k, const struct h1_request *r);

struct fake_ex {
    struct exchange ex; /* first: c->ex points here */
    struct conn *c;
    struct plan p;
    struct upconn up; /* p.backed_up: ex.up, its output past WINDOW_BYTES until drained */
    struct list_node link;
    uint32_t queued; /* body bytes queued so far */
    uint32_t pass;   /* the fakes_progress() pass that last stepped it */
    uint64_t wait_deadline;
    bool head_sent, held;
};

/* ---- the world --------------------------------------------------------------------------- */

static struct worker wrk;
static struct snapshot wsnap;
static struct timer_wheel wtw;
static struct conn cl;         /* the client connection */
static struct target tgt;      /* every exchange's domain: its timeouts */
static struct list_node fakes; /* struct fake_ex.link: the live ones */
static char filler[16384];

#define SEEN_CAP 65536u

/* What the stubs saw. */
static struct {
    uint32_t starts;                 /* ex_start */
    uint32_t aborts, ends;           /* exchanges ex_abort ended, and those that finished */
    uint32_t errors, last_error;     /* respond_error calls, the last one's status */
    uint32_t bad_bodies;             /* a request body ex_feed_body could not decode */
    uint32_t resumes, waits_expired; /* ex_backend_resume on an active exchange, pc_wait_expired */
    uint32_t streams_made, streams_freed;
    bool cl_released;
    char head[SEEN_CAP]; /* the last request head ex_start was given */
    uint32_t head_len;
    char body[SEEN_CAP]; /* request body bytes as the exchanges read them */
    uint32_t body_len;
    uint64_t body_total;
    uint64_t out_total; /* bytes the client connection queued */
} S;

/* The includer's: bytes the client connection queued, and those its client's socket took
 * (each in order), or NULL. */
static void (*queue_sink)(const char *p, uint32_t n);
static void (*client_sink)(const char *p, uint32_t n);

static struct fake_ex *fx_of(const struct conn *c)
{
    STUB_CHECK(c->ex != &wrk.no_ex);
    return (struct fake_ex *)c->ex;
}

static void cl_release(struct sock *s)
{
    STUB_CHECK(s == &cl.sk);
    h2_session_free(&cl); /* as conn_release does */
    S.cl_released = true;
}

static const struct sock_ops cl_ops = {.release = cl_release};

/* A fresh world: a worker on a snapshot with the defaults, its clock at 1000 s, and a plain
 * client connection that has not spoken yet. */
static void world_init(void)
{
    memset(&wrk, 0, sizeof(wrk));
    memset(&wsnap, 0, sizeof(wsnap));
    memset(&S, 0, sizeof(S));
    memset(filler, 'x', sizeof(filler));
    wsnap.cfg.header_timeout_ms = 10000;
    wsnap.cfg.keepalive_timeout_ms = 60000;
    wsnap.cfg.max_header_bytes = 16384;
    wsnap.cfg.max_header_count = 100;
    wsnap.cfg.max_target_len = 8192;
    wsnap.cfg.max_body_bytes = 1u << 20;
    wsnap.cfg.h2c = true;
    wsnap.cfg.h2_max_concurrent_streams = 128;
    wsnap.lim = (struct h1_limits){16384, 100, 8192};
    tgt.read_timeout_ms = 30000;
    tgt.write_timeout_ms = 10000;
    wrk.now_ms = 1000000;
    timer_wheel_init(&wtw, wrk.now_ms);
    wrk.tw = &wtw;
    wrk.snap = &wsnap;
    list_init(&wrk.conns);
    list_init(&wrk.h2_dirty);
    list_init(&fakes);
    memset(&cl, 0, sizeof(cl));
    sock_init(&cl.sk, 3, &cl_ops);
    cl.w = &wrk;
    cl.ex = &wrk.no_ex;
    cl.h2c_ok = true;
    cl.head_start_ms = wrk.now_ms;
}

/* ---- worker.c ------------------------------------------------------------------------------ */

void sock_init(struct sock *s, int fd, const struct sock_ops *ops)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->ops = ops;
    S.streams_made += ops == &stream_sock_ops;
}

/* As the worker's: a dead sock with nothing in flight waits for the end of the loop pass. */
void sock_kill(struct worker *w, struct sock *s)
{
    STUB_CHECK(w == &wrk);
    if (s->dead)
        return;
    s->dead = true;
    s->want_recv = false;
    timer_disarm(w->tw, &s->tm);
    s->grave_next = w->graveyard;
    w->graveyard = s;
}

/* The end of a loop pass: the modules' ticks (the HTTP/2 sessions' output, h2_tick), then
 * the dead socks are freed (worker.c's bury_all and sock_finish). */
static void graveyard_run(void)
{
    h2_tick(&wrk);
    while (wrk.graveyard) {
        struct sock *s = wrk.graveyard;

        wrk.graveyard = s->grave_next;
        if (s->ops == &stream_sock_ops) {
            /* a stream freed under a live exchange would leave it pointing at freed memory */
            STUB_CHECK(((struct conn *)s)->ex == &wrk.no_ex);
            S.streams_freed++;
        } else {
            STUB_CHECK(s == &cl.sk && cl.ex == &wrk.no_ex);
        }
        buf_free(&s->in);
        buf_free(&s->out.sending);
        buf_free(&s->out.pending);
        s->ops->release(s);
    }
}

/* sock_flush without a ring: the pending bytes become the send in flight. */
static void cl_flush(void)
{
    struct outq *q = &cl.sk.out;

    if (q->busy || cl.sk.dead)
        return;
    if (!buf_used(&q->sending)) {
        struct buf t = q->sending;
        q->sending = q->pending;
        q->pending = t;
        q->pending.off = q->pending.len = 0;
    }
    if (buf_used(&q->sending))
        q->busy = true;
}

/* The client's socket took up to k bytes of the send in flight: they go to client_sink, the
 * next send starts and the session hears of it (worker.c's on_send). Returns how many. */
static uint32_t client_took(uint32_t k)
{
    struct outq *q = &cl.sk.out;

    if (cl.sk.dead || !q->busy)
        return 0;
    if (k > buf_used(&q->sending))
        k = buf_used(&q->sending);
    if (!k)
        k = 1;
    if (client_sink)
        client_sink(buf_data(&q->sending), k);
    q->busy = false;
    buf_consume(&q->sending, k);
    cl_flush();
    conn_on_sent(&cl);
    return k;
}

/* ---- session_h1.c ------------------------------------------------------------------------ */

void conn_close(struct conn *c)
{
    if (c->h2s) {
        h2s_close(c);
        return;
    }
    STUB_CHECK(c == &cl);
    ex_abort(c);
    if (c->h2)
        h2_abort_streams(c);
    sock_kill(c->w, &c->sk);
}

void conn_queue_bytes(struct conn *c, const void *p, uint32_t n)
{
    if (c->h2s) {
        h2s_queue(c, p, n);
        return;
    }
    STUB_CHECK(c == &cl && !c->sk.dead);
    S.out_total += n;
    if (queue_sink)
        queue_sink(p, n);
    if (buf_append(&c->sk.out.pending, p, n))
        conn_close(c);
}

void conn_flush_out(struct conn *c)
{
    if (c->h2s)
        h2s_flush(c);
    else if (!c->sk.dead)
        cl_flush();
}

struct buf *conn_head_buf(struct conn *c)
{
    STUB_CHECK(c->h2s); /* (the client connection's heads are HTTP/2's own) */
    return &c->w->scratch;
}

void conn_head_done(struct conn *c, bool ok)
{
    STUB_CHECK(c->h2s);
    h2s_head_done(c, ok);
}

void conn_exchange_done(struct conn *c, bool close, bool unread)
{
    (void)close;
    (void)unread;
    STUB_CHECK(c->h2s);
    h2s_exchange_done(c);
}

void conn_resume_input(struct conn *c)
{
    STUB_CHECK(c->h2s);
    h2s_resume_input(c);
}

void conn_on_sent(struct conn *c)
{
    struct exchange *ex = c->ex;

    STUB_CHECK(c == &cl);
    if (c->sk.dead)
        return;
    if (c->h2) {
        h2_on_sent(c);
        if (c->sk.dead)
            return;
    }
    if (outq_bytes(&c->sk.out)) {
        conn_update_timer(c);
        return;
    }
    if (c->close_after && !ex_active(ex)) {
        conn_close(c); /* (plain, and no linger: an HTTP/2 connection never lingers) */
        return;
    }
    conn_update_timer(c);
}

/* session_h1.c's conn_update_timer and conn_idle, which streams share with HTTP/1.1. */
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
    STUB_CHECK(c->h2s);
    if (c->linger && !c->close_after && !outq_bytes(&c->sk.out))
        deadline = w->now_ms + 2000;
    else if (outq_bytes(&c->sk.out))
        deadline = w->now_ms + (ex->t ? ex->t->write_timeout_ms : h2s_write_timeout_ms(c));
    else
        switch ((enum ex_state)ex->state) {
        case EX_IDLE:
            if (buf_used(&c->sk.in) || !c->nreq) {
                deadline = c->head_start_ms + cfg->header_timeout_ms;
            } else {
                if (!c->sk.out.busy) {
                    buf_free(&c->sk.in);
                    buf_free(&c->sk.out.sending);
                    buf_free(&c->sk.out.pending);
                }
                deadline = w->now_ms + cfg->keepalive_timeout_ms;
            }
            break;
        case EX_TUNNEL:
            deadline = w->now_ms + cfg->tunnel_idle_timeout_ms;
            break;
        case EX_LOCAL:
        case EX_CACHE_WAIT:
        case EX_UPSTREAM:
        case EX_RESPONSE:
        case EX_DONE:
            if (!ex->req_done)
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

/* ---- respond.c ----------------------------------------------------------------------------- */

/* As respond.c's respond_error (respond_answer with close, then linger), without its metrics
 * and access log. */
void respond_error(struct conn *c, int status)
{
    struct buf *b = conn_head_buf(c);
    char head[200], body[64];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, h1_reason(status));
    bool ok = true;

    S.errors++;
    S.last_error = (uint32_t)status;
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nServer: ringproxy\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Length: %d\r\nConnection: close\r\n\r\n",
             status, h1_reason(status), blen);
    buf_put_str(b, &ok, head);
    buf_put(b, &ok, body, (size_t)blen);
    c->close_after = true;
    conn_head_done(c, ok);
    conn_flush_out(c);
    c->linger = true;
}

/* ---- exchange.c and pcache.c: the fake exchange ------------------------------------------- */

static void fx_free(struct fake_ex *fx)
{
    STUB_CHECK(fx->c->ex == &fx->ex);
    list_del(&fx->link);
    fx->c->ex = &wrk.no_ex;
    free(fx);
}

/* The exchange is over on the backend's side (ex_finish): it ends, then the session hears. */
static void fx_end(struct fake_ex *fx)
{
    struct conn *c = fx->c;
    bool unread = !fx->ex.req_done;

    fx->ex.state = EX_DONE;
    S.ends++;
    fx_free(fx);
    conn_exchange_done(c, false, unread);
}

static bool fx_live(const struct fake_ex *fx, const struct conn *c)
{
    return c->ex == &fx->ex;
}

static void fx_head(struct fake_ex *fx)
{
    struct conn *c = fx->c;
    const char *h = fx->p.head ? fx->p.head : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    bool ok = true;

    fx->head_sent = true;
    if (fx->p.interim) { /* conn_write_interim */
        buf_put_str(conn_head_buf(c), &ok, fx->p.interim);
        conn_head_done(c, ok);
        conn_flush_out(c);
        if (!fx_live(fx, c))
            return;
    }
    fx->ex.state = EX_RESPONSE;
    buf_put_str(conn_head_buf(c), &ok, h);
    conn_head_done(c, ok && !fx->p.bad_head); /* its body follows, then the flush */
}

/* Queues body bytes (one piece, or all while the client keeps up), then flushes; ends the
 * exchange once the whole body was queued. */
static void fx_body(struct fake_ex *fx, bool all)
{
    struct conn *c = fx->c;

    while (fx_live(fx, c) && fx->queued < fx->p.body_len) {
        uint32_t n = fx->p.body_len - fx->queued, cap = fx->p.piece ? fx->p.piece : n;

        if (outq_bytes(&c->sk.out) > WINDOW_BYTES) { /* the backend is not read meanwhile */
            fx->held = true;
            break;
        }
        n = n < cap ? n : cap;
        n = fx->p.body || n <= sizeof(filler) ? n : (uint32_t)sizeof(filler);
        conn_queue_bytes(c, fx->p.body ? fx->p.body + fx->queued : filler, n);
        fx->queued += n;
        if (fx->p.fail_mid_body && fx_live(fx, c)) {
            conn_close(c); /* the backend failed mid-response: the stream is reset */
            return;
        }
        if (!all)
            break;
    }
    if (!fx_live(fx, c))
        return;
    conn_flush_out(c);
    if (fx_live(fx, c) && fx->queued == fx->p.body_len)
        fx_end(fx);
}

static void fx_answer(struct fake_ex *fx, bool all)
{
    struct conn *c = fx->c;

    fx_head(fx);
    if (fx_live(fx, c))
        fx_body(fx, all);
}

void ex_start(struct conn *c, const struct h1_request *r, const char *head, uint32_t head_len)
{
    struct fake_ex *fx;
    uint32_t k = S.starts++;

    STUB_CHECK(c->h2s && !c->sk.dead && c->ex == &wrk.no_ex);
    STUB_CHECK(head_len == r->head_len && head_len >= 4 &&
               !memcmp(head + head_len - 4, "\r\n\r\n", 4));
    STUB_CHECK(r->minor == 1);
    S.head_len = head_len < SEEN_CAP ? head_len : SEEN_CAP;
    memcpy(S.head, head, S.head_len);
    c->nreq++;
    if (r->body == H1_BODY_LENGTH && r->content_length > wrk.snap->cfg.max_body_bytes) {
        respond_error(c, 413); /* start_exchange's check, before an exchange */
        return;
    }
    fx = calloc(1, sizeof(*fx));
    STUB_CHECK(fx);
    fx->c = c;
    fx->p = plan_for(k, r);
    fx->ex.state = EX_UPSTREAM;
    fx->ex.t = &tgt;
    fx->ex.method_id = r->method_id;
    fx->ex.client_minor = r->minor;
    fx->ex.req_body = r->body;
    fx->ex.req_left = r->content_length;
    fx->ex.req_done = r->body == H1_BODY_NONE;
    if (fx->p.backed_up) {
        fx->up.sk.out.pending.len = WINDOW_BYTES + 1; /* (counted, never read) */
        fx->ex.up = &fx->up;
    }
    list_add_tail(&fakes, &fx->link);
    c->ex = &fx->ex;
    if (fx->p.cache_wait) {
        fx->ex.state = EX_CACHE_WAIT;
        fx->wait_deadline = wrk.now_ms + fx->p.cache_wait;
        conn_update_timer(c);
        return;
    }
    ex_feed_body(c);
    if (!fx_live(fx, c))
        return;
    if (fx->p.when == ANSWER_NOW)
        fx_answer(fx, true);
    else if (fx->p.when == ANSWER_HEAD_NOW)
        fx_head(fx);
}

/* exchange.c's ex_feed_body, with the body recorded instead of sent. */
void ex_feed_body(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct buf *in = &c->sk.in;
    uint32_t n = buf_used(in);
    struct fake_ex *fx;
    bool done = false;

    if (!n || !ex_active(ex) || ex->req_done || c->sk.dead)
        return;
    fx = fx_of(c);
    if (ex->req_body == H1_BODY_LENGTH) {
        if (n > ex->req_left)
            n = (uint32_t)ex->req_left;
        ex->req_left -= n;
        done = ex->req_left == 0;
    } else {
        ssize_t k = h1_chunked_feed(&ex->req_ck, buf_data(in), n, NULL, NULL, &done);
        bool big = k >= 0 && ex->req_bytes + (uint64_t)k > wrk.snap->cfg.max_body_bytes + 65536;

        STUB_CHECK(ex->req_body == H1_BODY_CHUNKED);
        if (k < 0 || big || (fx->p.max_body && ex->req_bytes + (uint64_t)k > fx->p.max_body)) {
            S.bad_bodies += k < 0;
            if (ex_resp_started(ex)) {
                conn_close(c);
            } else {
                ex->up = NULL;
                respond_error(c, k < 0 ? 400 : 413);
                fx_free(fx); /* ex_end: no conn_exchange_done, as exchange.c does */
            }
            return;
        }
        n = (uint32_t)k;
    }
    if (S.body_len + n <= SEEN_CAP) {
        memcpy(S.body + S.body_len, buf_data(in), n);
        S.body_len += n;
    }
    S.body_total += n;
    ex->req_bytes += n;
    buf_consume(in, n);
    if (done)
        ex->req_done = true;
}

void ex_abort(struct conn *c)
{
    if (c->ex == &wrk.no_ex)
        return;
    STUB_CHECK(c->h2s);
    S.aborts++;
    fx_free(fx_of(c));
}

void ex_backend_resume(struct conn *c)
{
    if (!ex_active(c->ex))
        return;
    S.resumes++;
    fx_of(c)->held = false;
}

uint64_t pc_wait_deadline(const struct exchange *ex)
{
    return ((const struct fake_ex *)ex)->wait_deadline;
}

/* The wait is over: the request goes to its backend, which answers as planned. */
void pc_wait_expired(struct conn *c)
{
    struct fake_ex *fx = fx_of(c);

    STUB_CHECK(fx->ex.state == EX_CACHE_WAIT);
    S.waits_expired++;
    fx->ex.state = EX_UPSTREAM;
    fx->wait_deadline = 0;
    ex_feed_body(c);
    conn_update_timer(c);
}

/* What backends do between the client's events: each live exchange takes one step of its
 * plan (a backed-up backend drains, a head goes out, a body piece). */
static void fakes_progress(void)
{
    static uint32_t pass;
    struct list_node *n;

    pass++;
    /* a step may end any exchange (a stream reset, a connection closed): start over after each */
    for (n = fakes.next; n != &fakes;) {
        struct fake_ex *fx = container_of(n, struct fake_ex, link);
        struct conn *c = fx->c;

        if (fx->pass == pass) {
            n = n->next;
            continue;
        }
        fx->pass = pass;
        if (fx->ex.up == &fx->up && fx->up.sk.out.pending.len) {
            fx->up.sk.out.pending.len = 0; /* ex_upstream_sent: the backend took the bytes */
            if (c->recv_paused)
                conn_resume_input(c);
        } else if (fx->ex.state == EX_CACHE_WAIT) {
            /* (its timer decides) */
        } else if (!fx->head_sent) {
            if (fx->p.when != ANSWER_AFTER_BODY || fx->ex.req_done)
                fx_answer(fx, false);
        } else if (!fx->held) {
            fx_body(fx, false);
        }
        n = fakes.next;
    }
}

/* The backends of the exchanges still live all end (after the connection closed). */
static void fakes_finish(void)
{
    while (!list_empty(&fakes)) {
        struct fake_ex *fx = container_of(fakes.next, struct fake_ex, link);

        fx->ex.state = fx->ex.state == EX_CACHE_WAIT ? EX_UPSTREAM : fx->ex.state;
        if (!fx->head_sent)
            fx_head(fx);
        else
            fx_end(fx);
    }
}

/* The world's end: the connection closes (as when its client went away), the backends
 * still at work finish; nothing may be left of it. */
static void world_fini(void)
{
    if (!cl.sk.dead)
        conn_close(&cl);
    fakes_finish();
    graveyard_run();
    STUB_CHECK(S.cl_released);
    STUB_CHECK(list_empty(&fakes));
    STUB_CHECK(S.streams_made == S.streams_freed);
    STUB_CHECK(wtw.armed == 0);
    buf_free(&wrk.scratch);
    buf_free(&wrk.h2out);
    buf_free(&wrk.synth);
}

#endif /* RP_TEST_H2_STUBS_H */
