/* exchange.c: one proxied request's life on a client connection, as an explicit state
 * (enum ex_state). Routes the request, runs the request hooks and the cache filter, picks
 * backends, streams the request body, takes the response from the upstream client
 * (upstream.c's callbacks) and hands it to the session's response writer, and decides
 * retries, hedging and the 502/503/504 answers. Local endpoints are local.c's, answers the
 * proxy composes respond.c's, the upstream head upstream_head.c's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "log.h"

/* The exchange's side of its upstream connections (struct up_ops, user: the conn). */
static void ex_upstream_ready(struct upconn *up);
static void ex_upstream_sent(struct upconn *up);
static void ex_resp_head(struct upconn *up, const struct h1_response *r);
static void ex_resp_body(struct upconn *up, const struct up_body *b);
static void ex_resp_end(struct upconn *up, bool reusable);
static void ex_resp_flush(struct upconn *up);
static void ex_tunnel_data(struct upconn *up, char *p, uint32_t n);
static void ex_tunnel_eof(struct upconn *up);
static void ex_upstream_failed(struct upconn *up, int err, const char *what);
static void ex_try_timeout(struct upconn *up);
static const struct up_ops ex_up_ops = {
    .ready = ex_upstream_ready,
    .sent = ex_upstream_sent,
    .head = ex_resp_head,
    .body = ex_resp_body,
    .end = ex_resp_end,
    .flush = ex_resp_flush,
    .data = ex_tunnel_data,
    .eof = ex_tunnel_eof,
    .failed = ex_upstream_failed,
    .try_timeout = ex_try_timeout,
};
/* ---- the exchange ------------------------------------------------------------------------ */

/* The exchange of the current request lives only while the request does, so an idle
 * connection does not carry its weight; between requests c->ex is the worker's no_ex. */
struct exchange *ex_new(struct conn *c)
{
    struct exchange *ex = slab_alloc(&c->w->ex_slab);

    if (ex) {
        c->ex = ex;
        ex->snap = snap_use(c->w);
        metrics_inflight(c->w, 1);
    }
    return ex;
}

void ex_end(struct conn *c)
{
    struct exchange *ex = c->ex;

    if (ex == &c->w->no_ex)
        return;
    if (ex->log) /* the response is complete, or will never be: its line */
        alog_end(c);
    if (ex->up2) { /* a hedged attempt still racing: nobody waits for it now */
        atomic_fetch_sub_explicit(&ex->up2->be->inflight, 1, memory_order_relaxed);
        up_close(ex->up2);
        ex->up2 = NULL;
    }
    if (ex->be)
        atomic_fetch_sub_explicit(&ex->be->inflight, 1, memory_order_relaxed);
    buf_free(&ex->replay);
    pc_free(ex);
    free(ex->more);
    snap_unuse(c->w, ex->snap);
    slab_free(&c->w->ex_slab, ex);
    c->ex = &c->w->no_ex;
    metrics_inflight(c->w, -1);
}

void ex_abort(struct conn *c)
{
    if (c->ex->up) {
        up_close(c->ex->up);
        c->ex->up = NULL;
    }
    ex_end(c);
}

void ex_backend_resume(struct conn *c)
{
    struct exchange *ex = c->ex;

    if (ex_active(ex) && ex->up && ex->up->sk.recv == RECV_OFF && !ex->up->sk.want_recv &&
        ex->up->state == US_READY) {
        sock_recv_start(c->w, &ex->up->sk);
        up_update_timer(ex->up);
    }
}

/* RFC 9110 section 9.2.2's idempotent methods, and any request that carries an
 * Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): its sender asked the server
 * to recognise a repeat, so sending it twice is safe by the client's own contract. */
static bool is_idempotent(const struct h1_request *r)
{
    uint8_t m = r->method_id;

    if (m == H1_M_GET || m == H1_M_HEAD || m == H1_M_PUT || m == H1_M_DELETE || m == H1_M_OPTIONS ||
        m == H1_M_TRACE)
        return true;
    for (uint32_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].value_len &&
            h1_span_ieq(r->headers[i].name, r->headers[i].name_len, "idempotency-key"))
            return true;
    return false;
}

/* The exchange's request head for its backend ex->be; `ctx`: the request hooks', or NULL. */
static bool build_upstream_head(struct conn *c, const struct h1_request *r, struct buf *b,
                                const struct rp_hook_ctx *ctx)
{
    struct exchange *ex = c->ex;
    struct upstream_head h = {
        .t = ex->t,
        .be = ex->be,
        .peer = &c->peer,
        .tls = c->tls != NULL,
        .upgrade = ex->upgrade,
        .pc = ex->pc,
        .ctx = ctx,
        .request_id = alog_request_id(ex),
    };
    bool ok = conn_write_upstream_head(r, &h, b);

    ex->upgrade = h.upgrade;
    return ok;
}

/* Sends request bytes to the backend, keeping a copy while the request can be replayed. */
static void ex_forward(struct conn *c, const char *p, uint32_t n)
{
    struct exchange *ex = c->ex;

    ex->req_bytes += n;
    if (ex->replayable) {
        if (buf_used(&ex->replay) + n > REPLAY_MAX || buf_append(&ex->replay, p, n)) {
            ex->replayable = false;
            buf_free(&ex->replay);
        }
    }
    if (ex->up && up_queue(ex->up, p, n))
        ex_upstream_failed(ex->up, -ENOMEM, "out of memory");
}

/* Moves request body bytes from the client's input to the backend. */
void ex_feed_body(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct buf *in = &c->sk.in;
    uint32_t n = buf_used(in);
    bool done = false;

    if (!n || !ex_active(ex) || ex->req_done || c->sk.dead)
        return;
    if (ex->state == EX_LOCAL) {
        local_feed_body(c);
        return;
    }
    if (ex->req_body == H1_BODY_LENGTH) {
        if (n > ex->req_left)
            n = (uint32_t)ex->req_left;
        ex->req_left -= n;
        done = ex->req_left == 0;
    } else {
        ssize_t k = h1_chunked_feed(&ex->req_ck, buf_data(in), n, NULL, NULL, &done);
        if (k < 0 || ex->req_bytes + (uint64_t)k > c->w->snap->cfg.max_body_bytes + 65536) {
            int status = k < 0 ? 400 : 413;
            if (ex_resp_started(ex)) {
                conn_close(c);
            } else {
                if (ex->up)
                    up_close(ex->up);
                ex->up = NULL;
                respond_error(c, status); /* first: the answer is counted in its domain */
                ex_end(c);
            }
            return;
        }
        n = (uint32_t)k;
    }
    ex_forward(c, buf_data(in), n);
    if (c->sk.dead || c->ex != ex)
        return; /* the backend failed and the exchange ended with it */
    buf_consume(in, n);
    if (done)
        ex->req_done = true;
    if (ex->up) {
        ex->up->req_whole = ex->req_done;
        sock_flush(c->w, &ex->up->sk);
        up_update_timer(ex->up);
    }
}

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Starts an attempt at be: a pooled connection (unless `fresh`) or a new one, with the
 * request so far queued. The caller stores the result in ex->up or ex->up2 before calling
 * up_start, since a failure may be reported at once. NULL when out of memory. */
static struct upconn *attempt_new(struct conn *c, struct backend *be, bool fresh)
{
    struct exchange *ex = c->ex;
    struct upconn *up = up_get(c->w, ex->t, be, &ex_up_ops, c, fresh);

    if (!up)
        return NULL;
    up->sent_ns = mono_ns(); /* the response-time histogram, and least_latency, learn from it */
    alog_try_start(ex, be, up->sent_ns, up->reused);
    up->req_whole = ex->req_done;
    up->method = ex->method_id;
    if (up_proxy_header(up, &c->peer) ||
        (buf_used(&ex->replay) && up_queue(up, buf_data(&ex->replay), buf_used(&ex->replay)))) {
        up_close(up);
        return NULL;
    }
    return up;
}

static bool ex_connect(struct conn *c, bool fresh)
{
    struct exchange *ex = c->ex;

    if (!(ex->up = attempt_new(c, ex->be, fresh)))
        return false;
    up_start(ex->up);
    return true;
}

/* Picks a backend not tried yet for this request and counts the attempt (in flight from
 * now on); NULL when none is left. The caller makes it ex->be or a hedge's. */
static struct backend *ex_pick(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct target *t = ex->t;
    struct backend *be = bal_pick(&c->w->bal, t, (const struct sockaddr *)&c->peer, ex->tried);

    if (!be && !(be = health_fallback(c->w, t, ex->tried)))
        return NULL;
    for (uint32_t i = 0; i < t->n_backends && i < 64; i++)
        if (t->backends[i] == be)
            ex->tried |= 1ull << i;
    ex->attempts++;
    atomic_fetch_add_explicit(&be->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&be->requests, 1, memory_order_relaxed);
    return be;
}

/* Makes be (counted in flight by ex_pick) the exchange's backend, releasing the last one. */
static void ex_set_backend(struct exchange *ex, struct backend *be)
{
    if (ex->be)
        atomic_fetch_sub_explicit(&ex->be->inflight, 1, memory_order_relaxed);
    ex->be = be;
}

/* ---- answers made here: local endpoints and request hooks' rejections -------------------- */

/* Consults the cache (a hit is answered here), then writes the upstream head: `edited` is
 * the request with the hooks' edits (r itself without hooks), `ctx` their context or NULL.
 * Returns 1 to go upstream, 2 to wait for another request's cache fill first, 0 when
 * answered from the cache, -1 when out of memory (the caller closes). After 0 or -1 the
 * exchange has ended. */
static int ex_upstream_head(struct conn *c, const struct h1_request *r,
                            const struct h1_request *edited, const struct rp_hook_ctx *ctx)
{
    struct exchange *ex = c->ex;

    enum pc_result pr = PC_BYPASS;

    if (c->w->s->cache && !ex->t->no_cache && !ex->upgrade &&
        (pr = pc_request(c, r)) == PC_SERVED) {
        atomic_fetch_sub_explicit(&ex->be->requests, 1, memory_order_relaxed); /* never sent */
        ex_end(c);
        return 0;
    }
    if (pr == PC_BYPASS && c->w->s->cache && !ex->t->no_cache)
        alog_cache(ex, "BYPASS");
    if (!build_upstream_head(c, edited, &ex->replay, ctx)) {
        ex_end(c);
        return -1;
    }
    return pr == PC_WAIT ? 2 : 1;
}

/* Runs the request hooks, then ex_upstream_head with their edits. Returns as that, and 0
 * also when a hook rejected the request (answered here). */
static int run_request_hooks(struct conn *c, const struct h1_request *r)
{
    struct exchange *ex = c->ex;
    const struct hook_list *l = &c->w->s->hooks.req;
    struct rp_hook_ctx ctx;
    struct rp_headers h;
    char peer[INET6_ADDRSTRLEN];
    rp_proxy_request pr;
    bool pass = true;
    int rc = 1;

    hook_ctx_init(&ctx);
    hdrs_init(&h, r->headers, r->n_headers, HDRS_REQUEST);
    conn_format_peer(&c->peer, peer, sizeof(peer));
    pr = (rp_proxy_request){
        .domain = ex->t->label,
        .backend = ex->be->addr,
        .client_addr = peer,
        .method = {r->method, r->method_len},
        .path = {r->path, r->path_len},
        .host = {r->host ? r->host : "", r->host ? r->host_len : 0},
        .headers = &h,
        .worker = c->w->id,
        .ctx_ = &ctx,
    };
    for (uint32_t i = 0; i < l->n && pass; i++)
        pass = l->v[i].fn.req(&pr, l->v[i].user);
    if (pass) {
        struct h1_request edited = *r;
        uint32_t n;
        edited.headers = (struct h1_header *)hdrs_fields(&h, &n);
        edited.n_headers = n;
        rc = ex_upstream_head(c, r, &edited, &ctx);
    } else {
        atomic_fetch_sub_explicit(&ex->be->requests, 1, memory_order_relaxed); /* never sent */
        if (ctx.answer) {
            respond_unread(c, r, ctx.answer);
        } else {
            struct rp_response a;
            resp_init(&a, 502);
            rp_response_printf(&a, "502 Bad Gateway: the request was rejected\n");
            respond_unread(c, r, &a);
            resp_fini(&a);
        }
        ex_end(c);
        rc = 0;
    }
    hdrs_fini(&h);
    hook_ctx_fini(&ctx);
    return rc;
}

/* Keeps "METHOD PATH" for the response and error hooks, which run after the head is gone. */
static bool keep_method_path(struct exchange *ex, const struct h1_request *r)
{
    struct ex_more *m = calloc(1, sizeof(*m) + (size_t)r->method_len + r->path_len + 2);

    if (!m)
        return false;
    memcpy(m->mp, r->method, r->method_len);
    m->mp[r->method_len] = ' ';
    memcpy(m->mp + r->method_len + 1, r->path, r->path_len);
    m->m_len = r->method_len;
    m->p_len = r->path_len;
    ex->more = m;
    return true;
}

static rp_str ex_method(const struct exchange *ex)
{
    return ex->more ? (rp_str){ex->more->mp, ex->more->m_len} : (rp_str){"", 0};
}

static rp_str ex_path(const struct exchange *ex)
{
    return ex->more ? (rp_str){ex->more->mp + ex->more->m_len + 1, ex->more->p_len}
                    : (rp_str){"", 0};
}

static void start_exchange(struct conn *c, const struct h1_request *r, const char *head,
                           uint32_t head_len);

void ex_start(struct conn *c, const struct h1_request *r, const char *head, uint32_t head_len)
{
    const struct h1_request *outer = alog_set_request(c->w, r); /* for answers made here */

    start_exchange(c, r, head, head_len);
    alog_set_request(c->w, outer);
}

static void start_exchange(struct conn *c, const struct h1_request *r, const char *head,
                           uint32_t head_len)
{
    struct exchange *ex;
    const rp_server_config *cfg = &c->w->snap->cfg;
    char body[300];

    ctr_add(&c->w->requests, 1);
    c->nreq++;
    if (r->method_id == H1_M_CONNECT) {
        respond_unread_text(c, r, 405, "CONNECT is not supported\n");
        return;
    }
    if (r->body == H1_BODY_LENGTH && r->content_length > cfg->max_body_bytes) {
        respond_error(c, 413);
        return;
    }
    if (c->admin) { /* the admin listener serves its API and nothing else */
        local_admin_request(c, r, head, head_len);
        return;
    }
    if (c->w->s->hooks.n_local && local_start(c, r, head, head_len))
        return;
    ex = ex_new(c);
    if (!ex) {
        conn_close(c);
        return;
    }
    ex->t = route_match(&ex->snap->rt, r->host, r->host_len, r->path, r->path_len);
    if (!ex->t) {
        ex_end(c);
        respond_unread_text(c, r, 404, "no route for this host and path\n"); /* not routed */
        return;
    }
    alog_begin(c, r);
    if (!(ex->be = ex_pick(c))) {
        snprintf(body, sizeof(body), "no healthy backend for %.*s\n", (int)ex->t->name_len,
                 ex->t->name);
        respond_unread_text(c, r, 503, body);
        ex_end(c);
        return;
    }
    ex->state = EX_UPSTREAM;
    ex->replayable = true;
    ex->method_id = r->method_id;
    ex->client_minor = r->minor;
    ex->idempotent = is_idempotent(r);
    ex->upgrade = tunnel_wanted(r, ex->t) != NULL;
    ex->close_client = !r->keep_alive || c->w->draining;
    ex->req_body = r->body;
    ex->req_left = r->content_length;
    ex->req_done = r->body == H1_BODY_NONE;
    if ((c->w->s->hooks.resp.n || c->w->s->hooks.err.n) && !keep_method_path(ex, r)) {
        ex_end(c);
        conn_close(c);
        return;
    }
    int rc = c->w->s->hooks.req.n ? run_request_hooks(c, r) : ex_upstream_head(c, r, r, NULL);
    if (rc < 0)
        conn_close(c);
    if (rc <= 0)
        return;
    if (rc == 2) { /* parked behind a cache fill: conn_cache_resume goes on */
        ex->state = EX_CACHE_WAIT;
        conn_update_timer(c);
        return;
    }
    ex->req_bytes = 0;
    if (!ex_connect(c, false)) {
        conn_close(c);
        return;
    }
    if (c->ex != ex)
        return; /* every attempt failed at once and the 502 went out: no 100 after it */
    conn_send_continue(c, r);
    ex_feed_body(c);
    if (c->ex == ex && ex->up) /* the head, with any body bytes that came along, at once */
        sock_flush(c->w, &ex->up->sk);
}

void conn_cache_resume(struct conn *c, bool served)
{
    struct exchange *ex = c->ex;

    if (served) {
        atomic_fetch_sub_explicit(&ex->be->requests, 1, memory_order_relaxed); /* never sent */
        ex_end(c);
        conn_process(c); /* a pipelined request may be waiting */
        conn_flush_out(c);
        return;
    }
    ex->state = EX_UPSTREAM;
    if (!ex_connect(c, false)) {
        conn_close(c);
        return;
    }
    if (c->ex == ex && ex->up) /* (a failure at once may have answered) */
        sock_flush(c->w, &ex->up->sk);
    conn_update_timer(c);
}

/* ---- failures and retries ---------------------------------------------------------------- */

/* Whether the request may go to another backend after an attempt failed: it must be held
 * whole for replay and unanswered; after a connect failure nothing was sent, otherwise it
 * must be safe to send twice. */
static bool may_retry(struct conn *c, bool connecting)
{
    struct exchange *ex = c->ex;

    if (!ex->replayable || ex_resp_started(ex) || ex->attempts > (uint8_t)ex->t->max_retries)
        return false;
    return connecting || (ex->idempotent && !c->w->draining);
}

static void report_error(struct conn *c, const struct backend *be, int err, const char *what)
{
    const struct exchange *ex = c->ex;
    const struct hook_list *l = &c->w->s->hooks.err;
    char msg[160];
    rp_proxy_error e;

    snprintf(msg, sizeof(msg), "%s: %s", what, strerror(-err));
    e = (rp_proxy_error){
        .domain = ex->t->label,
        .backend = be->addr,
        .attempt = ex->attempts,
        .err = -err,
        .message = msg,
        .method = ex_method(ex),
        .path = ex_path(ex),
        .worker = c->w->id,
    };
    for (uint32_t i = 0; i < l->n; i++)
        l->v[i].fn.err(&e, l->v[i].user);
}

/* A backend that hangs or resets must not look fast to least_latency. */
static void observe_failure(const struct upconn *up)
{
    if (up->sent_ns && up->t->lb == RP_LB_LEAST_LATENCY) {
        uint64_t now = mono_ns();
        bal_observe(up->be, now, now - up->sent_ns);
    }
}

/* One of two racing attempts ends (it failed, or lost): the other goes on alone. */
static void hedge_drop(struct exchange *ex, struct upconn *up)
{
    if (up == ex->up) { /* the hedge becomes the attempt */
        ex->up = ex->up2;
        ex_set_backend(ex, ex->up->be);
    } else {
        atomic_fetch_sub_explicit(&up->be->inflight, 1, memory_order_relaxed);
    }
    ex->up2 = NULL;
    up_close(up);
}

/* Starts an attempt at be (picked by ex_pick) beside ex->up, as the hedge ex->up2. */
static void attempt_hedge(struct conn *c, struct backend *be)
{
    struct exchange *ex = c->ex;
    struct upconn *up = attempt_new(c, be, false);

    if (!up) { /* out of memory: the attempt in flight goes on alone */
        atomic_fetch_sub_explicit(&be->inflight, 1, memory_order_relaxed);
        return;
    }
    ex->up2 = up;
    up_start(up);
    if (ex->up2 == up) /* (a failure at once dropped it) */
        sock_flush(c->w, &up->sk);
}

/* Replaces the attempt ex->up (closed, if any) by one at be (picked by ex_pick). Returns
 * false when out of memory; on true, a failure reported at once may have answered. */
static bool attempt_replace(struct conn *c, struct backend *be)
{
    struct exchange *ex = c->ex;

    if (ex->up)
        up_close(ex->up);
    ex->up = NULL;
    ex_set_backend(ex, be);
    if (!ex_connect(c, false))
        return false;
    if (c->ex == ex && ex->up)
        sock_flush(c->w, &ex->up->sk);
    return true;
}

static void ex_upstream_failed(struct upconn *up, int err, const char *what)
{
    struct conn *c = up->user;
    struct exchange *ex = c->ex;
    struct backend *be = up->be;
    bool connecting = up->state == US_CONNECTING;
    /* a pooled connection that died before answering says nothing about the backend now */
    bool stale = up->reused && !up->got_bytes && err != -ETIMEDOUT;
    /* ... and if no byte of the request reached the kernel, the backend cannot have read
     * it: any request may then go again (its send, if queued, is taken back here) */
    bool unsent = stale && !up->req_sent && (!up->sk.out.busy || sock_unsend(c->w, &up->sk));
    struct backend *next;
    bool refresh;

    atomic_fetch_add_explicit(&be->failures, 1, memory_order_relaxed);
    metrics_failure(c->w, be, err, what);
    alog_try(ex, be, err == -ETIMEDOUT ? 504 : 502, true);
    log_warn("backend %s (%.*s): %s: %s (attempt %u)", be->addr, (int)ex->t->name_len, ex->t->name,
             what, strerror(-err), ex->attempts);
    observe_failure(up);
    /* passive health: refusals, resets and timeouts before any response (but not malformed
     * responses, or a stale pooled connection) */
    if (connecting || (!stale && !ex_resp_started(ex) && err != -EBADMSG))
        health_report_failure(c->w, ex->t, be, strerror(-err));
    if (ex->up2) { /* hedging: the other attempt goes on */
        if (c->w->s->hooks.err.n)
            report_error(c, be, err, what);
        hedge_drop(ex, up);
        return;
    }
    up_close(up);
    ex->up = NULL;
    if (ex_resp_started(ex)) { /* the client has part of a response: only a close tells it */
        conn_close(c);
        return;
    }
    /* Once per request, a request that met a stale pooled connection goes again on a fresh
     * connection to the same backend: not a failed attempt. A non-idempotent one only when
     * it provably was not sent: it may have been read and acted on (HAProxy and nginx
     * refuse the same replay). */
    refresh = stale && !ex->reuse_retried && ex->replayable && (ex->idempotent || unsent) &&
              !c->w->draining;
    if (c->w->s->hooks.err.n && !refresh)
        report_error(c, be, err, what);
    if (refresh) {
        ex->reuse_retried = true; /* same backend, fresh connection */
        metrics_retry(c->w, ex->t);
        if (ex_connect(c, true)) {
            if (c->ex == ex && ex->up) /* (a failure at once may have answered) */
                sock_flush(c->w, &ex->up->sk);
            return;
        }
    } else if (may_retry(c, connecting) && (next = ex_pick(c)) &&
               (metrics_retry(c->w, ex->t), attempt_replace(c, next))) {
        return;
    }
    if (c->sk.dead || c->ex != ex || ex->up)
        return; /* a retry's failure reported at once already answered */
    if (ex->pc && pc_serve_stale_on_error(c)) { /* stale-if-error */
        ex_end(c);
        conn_update_timer(c);
        return;
    }
    ctr_add(&c->w->errors, 1);
    respond_error(c, err == -ETIMEDOUT ? 504 : 502);
    ex_end(c);
    conn_update_timer(c);
}

static void ex_try_timeout(struct upconn *up)
{
    struct conn *c = up->user;
    struct exchange *ex = c->ex;
    struct backend *be = up->be, *next;

    atomic_fetch_add_explicit(&be->failures, 1, memory_order_relaxed);
    metrics_failure(c->w, be, -ETIMEDOUT, "try_timeout");
    log_warn("backend %s (%.*s): no response within try_timeout (attempt %u)", be->addr,
             (int)ex->t->name_len, ex->t->name, ex->attempts);
    observe_failure(up);
    health_report_failure(c->w, ex->t, be, "no response within try_timeout");
    up_update_timer(up); /* the attempt goes on under read_timeout unless replaced */
    /* only a whole request held for replay, safe to send twice, goes to another backend */
    if (!ex->idempotent || !ex->replayable || !ex->req_done || ex_resp_started(ex) ||
        c->w->draining || ex->attempts > (uint8_t)ex->t->max_retries)
        return;
    if (!(next = ex_pick(c)))
        return; /* nowhere else to go */
    if (ex->t->hedge) {
        /* keep this attempt, the first response head of the two wins; if two already
         * race, this one gives way to the new one */
        if (ex->up2)
            hedge_drop(ex, up);
        attempt_hedge(c, next);
        return;
    }
    if (c->w->s->hooks.err.n)
        report_error(c, be, -ETIMEDOUT, "no response within try_timeout");
    metrics_retry(c->w, ex->t);
    alog_try(ex, be, 504, true);
    if (!attempt_replace(c, next) && !c->sk.dead && c->ex == ex && !ex->up) {
        respond_error(c, 502); /* out of memory */
        ex_end(c);
        conn_update_timer(c);
    }
}

/* ---- the backend's side of the exchange -------------------------------------------------- */

static void ex_upstream_ready(struct upconn *up)
{
    alog_try(((struct conn *)up->user)->ex, up->be, 0, false);
    conn_update_timer(up->user);
}

static void ex_upstream_sent(struct upconn *up)
{
    struct conn *c = up->user;

    if (c->ex->state == EX_TUNNEL)
        tunnel_sent(c);
    if (c->sk.dead)
        return;
    /* The backend took our bytes: read more of the client's body if we held it back. */
    if (c->recv_paused && c->ex->up == up && outq_bytes(&up->sk.out) < WINDOW_BYTES / 2)
        conn_resume_input(c);
}

/* The exchange is over on the backend's side: its connection goes back to the pool when
 * `reusable` (from the reader) and the whole request was sent; the client connection goes
 * on with its next request, or closes. */
static void ex_finish(struct conn *c, bool reusable)
{
    struct exchange *ex = c->ex;
    struct upconn *up = ex->up;
    bool close, unread;

    if (up) {
        ex->up = NULL;
        up_release_to_pool(up, reusable && ex->req_done);
    }
    if (ex->pc && ex->state == EX_DONE)
        pc_store_end(ex->pc);
    close = ex->close_client;
    unread = !ex->req_done; /* the backend answered before the body ended */
    ex_end(c);
    conn_exchange_done(c, close, unread);
}

/* Runs the response hooks and writes the head with their edits. */
static void run_response_hooks(struct conn *c, const struct h1_response *r)
{
    struct exchange *ex = c->ex;
    const struct hook_list *l = &c->w->s->hooks.resp;
    struct h1_response edited = *r;
    struct rp_headers h;
    struct rp_hook_ctx ctx;
    rp_proxy_response pr;
    uint32_t n;

    hook_ctx_init(&ctx);
    hdrs_init(&h, r->headers, r->n_headers, HDRS_RESPONSE);
    pr = (rp_proxy_response){
        .domain = ex->t->label,
        .backend = ex->be->addr,
        .method = ex_method(ex),
        .path = ex_path(ex),
        .status = r->status,
        .headers = &h,
        .worker = c->w->id,
        .ctx_ = &ctx,
    };
    for (uint32_t i = 0; i < l->n; i++)
        l->v[i].fn.resp(&pr, l->v[i].user);
    if (pr.status != r->status) {
        /* 204 and 304 have no body: a change to or from them would misframe the response */
        bool was_empty = r->status == 204 || r->status == 304;
        bool now_empty = pr.status == 204 || pr.status == 304;
        if (pr.status < 200 || pr.status > 599 ||
            (was_empty != now_empty && ex->method_id != H1_M_HEAD)) {
            log_warn("a response hook's status %d for %.*s was ignored (the backend sent %u)",
                     pr.status, (int)ex_path(ex).len, ex_path(ex).p, r->status);
        } else {
            edited.status = (uint16_t)pr.status;
            edited.reason_len = 0;
        }
    }
    edited.headers = (struct h1_header *)hdrs_fields(&h, &n);
    edited.n_headers = n;
    metrics_request(c->w, ex->t, edited.status);
    alog_status(ex, edited.status);
    conn_write_response_head(c, &edited, &ctx);
    hdrs_fini(&h);
    hook_ctx_fini(&ctx);
}

static void ex_begin_response(struct conn *c, struct upconn *up, const struct h1_response *r)
{
    struct exchange *ex = c->ex;

    ex->state = EX_RESPONSE;
    health_report_success(c->w, ex->be);
    if (up->sent_ns) {
        uint64_t now = mono_ns();
        metrics_response_time(c->w, ex->be, now - up->sent_ns);
        if (ex->t->lb == RP_LB_LEAST_LATENCY)
            bal_observe(ex->be, now, now - up->sent_ns);
    }
    if (r->status >= 500)
        metrics_failure(c->w, ex->be, r->status, NULL);
    ex->resp_body = r->body;
    /* HTTP/1.0 and HTTP/2 clients get a chunked body decoded (HTTP/2 frames it itself) */
    ex->resp_dechunk = r->body == H1_BODY_CHUNKED && (ex->client_minor == 0 || c->h2s);
    if (r->body == H1_BODY_UNTIL_CLOSE || (ex->resp_dechunk && !c->h2s) || !ex->req_done)
        ex->close_client = true;
    if (r->body == H1_BODY_LENGTH && r->content_length) /* one allocation for head and body */
        buf_reserve(&c->sk.out.pending, r->content_length < WINDOW_BYTES
                                            ? (uint32_t)r->content_length + r->head_len
                                            : WINDOW_BYTES);
    if (ex->pc && pc_intercept_response(c, r)) {
        /* answered from the cache: the backend's response is not relayed */
        ex->state = EX_DONE;
        up_skip_body(up);
        return;
    }
    if (c->w->s->hooks.resp.n)
        run_response_hooks(c, r); /* it may close the connection */
    else {
        metrics_request(c->w, ex->t, r->status);
        alog_status(ex, r->status);
        conn_write_response_head(c, r, NULL);
    }
    if (c->sk.dead)
        return;
    /* the client gets the body as it came; an HTTP/1.0 client and the cache get it decoded */
    up->decode = ex->resp_dechunk ? UP_DECODE : pc_storing(ex->pc) ? UP_BOTH : UP_RAW;
}

/* A response head from `up`: interim ones are passed on (but 101, which starts a tunnel or
 * fails the attempt), the final one starts the response. */
static void ex_resp_head(struct upconn *up, const struct h1_response *r)
{
    struct conn *c = up->user;
    struct exchange *ex = c->ex;

    if (ex->up2) /* two attempts race (hedge): the first with a head wins, the other goes */
        hedge_drop(ex, up == ex->up ? ex->up2 : ex->up);
    if (r->status >= 200 || r->status == 101)
        alog_try(ex, up->be, r->status, false);
    if (r->status == 101) {
        if (ex->upgrade && tunnel_response_ok(r))
            tunnel_begin(c, up, r);
        return; /* else the reader fails the attempt */
    }
    if (r->status < 200)
        conn_write_interim(c, r);
    else
        ex_begin_response(c, up, r);
}

static void ex_resp_body(struct upconn *up, const struct up_body *b)
{
    struct conn *c = up->user;
    struct exchange *ex = c->ex;

    if (ex->pc) {
        pc_store_body(ex->pc, b->data, b->data_len);
        if (up->decode == UP_BOTH && !pc_storing(ex->pc))
            up->decode = UP_RAW; /* past the entry's limit: the client alone needs the bytes */
    }
    alog_body(ex, ex->resp_dechunk ? b->data_len : b->raw_len);
    if (ex->resp_dechunk)
        conn_queue_bytes(c, b->data, b->data_len);
    else
        conn_queue_bytes(c, b->raw, b->raw_len);
    if (b->n_trailers && c->h2s && !c->sk.dead) /* (HTTP/1.1 clients: in raw's last chunk) */
        h2s_trailers(c, b->trailers, b->n_trailers);
    if (!c->sk.dead && outq_bytes(&c->sk.out) > WINDOW_BYTES)
        sock_recv_stop(c->w, &up->sk); /* hold the backend back while the client is slow */
}

/* The bytes of one receive were handed over: the head and the body that came with it leave
 * in one send. */
static void ex_resp_flush(struct upconn *up)
{
    struct conn *c = up->user;

    conn_flush_out(c);
    conn_update_timer(c);
}

static void ex_resp_end(struct upconn *up, bool reusable)
{
    struct conn *c = up->user;

    c->ex->state = EX_DONE;
    ex_finish(c, reusable);
    conn_flush_out(c);
}

static void ex_tunnel_data(struct upconn *up, char *p, uint32_t n)
{
    tunnel_backend_data(up->user, up, p, n);
}

static void ex_tunnel_eof(struct upconn *up)
{
    tunnel_backend_eof(up->user);
}
