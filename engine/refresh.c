/* refresh.c: stale-while-revalidate's background refreshes. A refresh is a request of the
 * upstream client (upstream.c) with callbacks of its own and no client connection: it sends
 * the stale entry's request to a backend of its target, conditionally, and hands the answer
 * to the cache's state of that request (pcache.c), which refreshes the entry on a 304 or
 * stores the new response. It holds the URL's fill and ends it exactly once (freeing that
 * state does), whatever happens. Hooks do not run for it: no client waits for its answer.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

#define REFRESH_HEADERS_CAP 256

struct refresh {
    struct worker *w;
    struct target *t;
    struct backend *be; /* counted in flight while the refresh lives */
    struct upconn *up;
    struct pc_state *pc; /* the key, the request's fields, the stale entry and the fill */
    struct timer tm;     /* the whole refresh must end within the target's read_timeout */
    struct buf head;     /* the request head, kept for one go on a fresh connection */
    struct h1_chunked ck;
    uint64_t left; /* Content-Length bytes still to come */
    uint8_t body;  /* enum h1_body_kind of the response, once its head came */
    bool started;  /* the final response head came */
    bool retried;  /* already sent again after a stale pooled connection */
};

static const struct up_ops refresh_ops;

/* Ends the refresh: the connection goes back to the pool when `reusable` and nothing of the
 * request is still on the wire (else it closes), and the cache state goes, ending the fill as
 * abandoned if nothing ended it before. */
static void refresh_end(struct refresh *rf, bool reusable)
{
    if (rf->up)
        up_release_to_pool(rf->up, reusable && !rf->up->sk.out.busy);
    timer_disarm(rf->w->tw, &rf->tm);
    atomic_fetch_sub_explicit(&rf->be->inflight, 1, memory_order_relaxed);
    pc_state_free(rf->pc);
    buf_free(&rf->head);
    free(rf);
}

/* The whole response arrived: it is stored (the fill ends), then the refresh ends. */
static void refresh_done(struct refresh *rf, bool reusable)
{
    pc_store_end(rf->pc);
    refresh_end(rf, reusable);
}

/* Sends the head on a pooled connection (unless `fresh`) or a new one. The last thing a
 * caller does: a failure may be reported before this returns, and end the refresh. */
static void refresh_connect(struct refresh *rf, bool fresh)
{
    struct upconn *up = up_get(rf->w, rf->t, rf->be, &refresh_ops, rf, fresh);

    if (!up) {
        rf->up = NULL;
        refresh_end(rf, false);
        return;
    }
    rf->up = up;
    up->try_deadline_ms = 0; /* no client waits: one attempt, bounded by the refresh's timer */
    up->req_whole = true;
    if (up_queue(up, buf_data(&rf->head), buf_used(&rf->head))) {
        refresh_end(rf, false);
        return;
    }
    sock_flush(rf->w, &up->sk); /* a pooled connection; a new one sends once connected */
    up_start(up);
}

/* Counts and logs a failure of the backend; `health`: it counts against its health too. */
static void report_failure(struct refresh *rf, int err, const char *what, bool health)
{
    atomic_fetch_add_explicit(&rf->be->failures, 1, memory_order_relaxed);
    log_warn("backend %s (%.*s): background cache refresh: %s: %s", rf->be->addr,
             (int)rf->t->name_len, rf->t->name, what, strerror(-err));
    if (health)
        health_report_failure(rf->w, rf->be, strerror(-err));
}

/* The refresh failed. A pooled connection the backend had closed before it answered says
 * nothing about the backend: the request goes once more on a fresh connection. Returns false
 * (the refresh is over, or starting again: either way the caller must not touch it). */
static bool refresh_fail(struct refresh *rf, int err, const char *what)
{
    struct upconn *up = rf->up;
    bool connecting = up->state == US_CONNECTING;
    bool stale = up->reused && !up->got_bytes && err != -ETIMEDOUT;

    if (stale && !rf->retried && !rf->w->draining) {
        rf->retried = true;
        up_close(up);
        rf->up = NULL;
        refresh_connect(rf, true);
        return false;
    }
    /* passive health as for traffic: not for a malformed answer or a stale connection; a
     * draining worker's cancel says nothing about the backend at all */
    if (err != -ECANCELED)
        report_failure(rf, err, what, connecting || (!stale && !rf->started && err != -EBADMSG));
    up_close(up);
    rf->up = NULL;
    refresh_end(rf, false);
    return false;
}

/* Body bytes p[0..n) of the response being stored. Returns whether the refresh goes on. */
static bool refresh_body(struct refresh *rf, const char *p, uint32_t n)
{
    uint32_t used = n;
    size_t out = 0;
    bool done = false;
    char *dec;
    ssize_t k;

    if (!n)
        return true;
    switch (rf->body) {
    case H1_BODY_LENGTH:
        used = n < rf->left ? n : (uint32_t)rf->left;
        rf->left -= used;
        done = !rf->left;
        pc_store_body(rf->pc, p, used);
        break;
    case H1_BODY_CHUNKED:
        if (!(dec = pc_dechunk_buf(rf->pc, n)))
            break; /* out of memory: nothing is stored */
        if ((k = h1_chunked_feed(&rf->ck, p, n, dec, &out, &done)) < 0)
            return refresh_fail(rf, -EBADMSG, "bad chunked response body");
        used = (uint32_t)k;
        pc_store_body(rf->pc, dec, out);
        break;
    default: /* until the backend closes (refresh_eof) */
        pc_store_body(rf->pc, p, n);
    }
    if (!pc_storing(rf->pc)) { /* past the entry's limit: the rest is not worth reading */
        refresh_end(rf, false);
        return false;
    }
    if (done) {
        refresh_done(rf, rf->up->reuse_ok && used == n);
        return false;
    }
    return true;
}

/* The final response head r came, `extra` bytes after it so far. A 304 refreshes the entry;
 * a 5xx the stale entry may stand in for (stale-if-error) leaves it as it is; anything else
 * is stored if the cache may keep it. Returns whether the refresh goes on (to read a body). */
static bool refresh_head(struct refresh *rf, const struct h1_response *r, uint32_t extra)
{
    bool bodyless = r->body == H1_BODY_NONE || (r->body == H1_BODY_LENGTH && !r->content_length);
    bool reusable = r->keep_alive && bodyless && !extra;

    rf->started = true;
    rf->up->reuse_ok = r->keep_alive;
    health_report_success(rf->w, rf->be);
    if (pc_revalidated(rf->pc, r, NULL) || pc_stale_if_error(rf->pc, r)) {
        refresh_end(rf, reusable);
        return false;
    }
    pc_store_start(rf->pc, rf->t->label, r, NULL);
    if (!pc_storing(rf->pc)) { /* not storable: its body is not worth reading */
        refresh_end(rf, reusable);
        return false;
    }
    if (bodyless) {
        refresh_done(rf, reusable);
        return false;
    }
    rf->body = r->body;
    rf->left = r->content_length;
    return true;
}

/* Parses the response head from p[0..n) (interim 1xx heads are skipped) and hands the bytes
 * after it to refresh_body. Returns how many bytes it used while the head is incomplete (the
 * caller keeps the rest), or -1 once the head was handled or the refresh failed. */
static int refresh_parse(struct refresh *rf, const char *p, uint32_t n)
{
    struct h1_header hdrs[REFRESH_HEADERS_CAP];
    const struct h1_limits *lim = &rf->w->s->lim;
    uint32_t off = 0;
    int rc;

    for (;;) {
        struct h1_response r = {.headers = hdrs, .headers_cap = REFRESH_HEADERS_CAP};
        rc = h1_parse_response(p + off, n - off, &r, lim, H1_M_GET);
        if (rc == -EAGAIN && n - off <= lim->max_head_bytes * 2u)
            return (int)off;
        if (rc < 0 || r.status == 101)
            break;
        off += (uint32_t)rc;
        if (r.status >= 200) {
            if (refresh_head(rf, &r, n - off))
                refresh_body(rf, p + off, n - off);
            return -1;
        }
    }
    if (rc == -EAGAIN)
        refresh_fail(rf, -E2BIG, "response head too large");
    else
        refresh_fail(rf, rc < 0 ? -EBADMSG : -EPROTO, "malformed response head");
    return -1;
}

static void refresh_data(struct upconn *up, char *p, uint32_t n)
{
    struct refresh *rf = up->user;
    struct buf *in = &up->sk.in; /* a partial head, as an exchange keeps it */
    int k;

    if (rf->started) {
        refresh_body(rf, p, n);
        return;
    }
    if (!buf_used(in)) { /* the common case: a whole head in one receive */
        k = refresh_parse(rf, p, n);
        if (k >= 0 && buf_append(in, p + k, n - (uint32_t)k))
            refresh_fail(rf, -ENOMEM, "out of memory");
        return;
    }
    if (buf_append(in, p, n)) {
        refresh_fail(rf, -ENOMEM, "out of memory");
        return;
    }
    k = refresh_parse(rf, buf_data(in), buf_used(in));
    if (k >= 0)
        buf_consume(in, (uint32_t)k);
    else
        buf_free(in); /* all used; `up` outlives this call even if the refresh ended */
}

static void refresh_eof(struct upconn *up)
{
    struct refresh *rf = up->user;

    if (rf->started && rf->body == H1_BODY_UNTIL_CLOSE) {
        up->reuse_ok = false;
        refresh_done(rf, false);
        return;
    }
    refresh_fail(rf, -ECONNRESET, rf->started ? "closed mid-response" : "closed before responding");
}

static void refresh_failed(struct upconn *up, int err, const char *what)
{
    refresh_fail(up->user, err, what);
}

static void refresh_timeout(struct timer *tm, uint64_t now)
{
    struct refresh *rf = (struct refresh *)((char *)tm - offsetof(struct refresh, tm));

    (void)now;
    refresh_fail(rf, -ETIMEDOUT, "not done within read_timeout");
}

static void refresh_idle(struct upconn *up)
{
    (void)up; /* connected, sent: the refresh's own timer bounds it all */
}

static const struct up_ops refresh_ops = {
    .ready = refresh_idle,
    .sent = refresh_idle,
    .data = refresh_data,
    .eof = refresh_eof,
    .failed = refresh_failed,
    .try_timeout = refresh_idle, /* never armed (refresh_connect) */
    .background = true,
};

/* The target and a backend for r, counted in flight; false when there is none. */
static bool refresh_route(struct refresh *rf, const struct h1_request *r,
                          const struct sockaddr_in6 *peer)
{
    struct worker *w = rf->w;

    rf->t = route_match(&w->s->rt, r->host, r->host_len, r->path, r->path_len);
    if (!rf->t)
        return false;
    rf->be = bal_pick(&w->bal, rf->t, (const struct sockaddr *)peer, 0);
    if (!rf->be && !(rf->be = health_fallback(w, rf->t, 0)))
        return false;
    atomic_fetch_add_explicit(&rf->be->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rf->be->requests, 1, memory_order_relaxed);
    return true;
}

void refresh_start(struct worker *w, const struct h1_request *r, const struct sockaddr_in6 *peer,
                   bool tls, struct pc_state *p)
{
    struct refresh *rf = calloc(1, sizeof(*rf));
    struct upstream_head h = {.peer = peer, .tls = tls, .pc = p};

    if (rf)
        rf->w = w;
    if (!rf || !refresh_route(rf, r, peer)) {
        log_debug("background cache refresh of %.*s: %s", (int)r->path_len, r->path,
                  rf ? "no route or no healthy backend" : "out of memory");
        free(rf);
        pc_state_free(p); /* the fill ends, abandoned */
        return;
    }
    rf->pc = p;
    rf->tm.fn = refresh_timeout;
    timer_arm(w->tw, &rf->tm, w->now_ms + rf->t->read_timeout_ms);
    h.t = rf->t;
    h.be = rf->be;
    if (!conn_write_upstream_head(r, &h, &rf->head)) {
        refresh_end(rf, false);
        return;
    }
    refresh_connect(rf, false);
}
