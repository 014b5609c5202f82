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

struct refresh {
    struct worker *w;
    struct snapshot *snap; /* the configuration it started on (t, be) */
    struct target *t;
    struct backend *be; /* counted in flight while the refresh lives */
    struct upconn *up;
    struct pc_state *pc;      /* the key, the request's fields, the stale entry and the fill */
    struct timer tm;          /* the whole refresh must end within the target's read_timeout */
    struct buf head;          /* the request head, kept for one go on a fresh connection */
    struct sockaddr_in6 peer; /* the client whose request it refreshes (send_proxy_protocol) */
    bool started;             /* the final response head came */
    bool retried;             /* already sent again after a stale pooled connection */
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
    snap_unuse(rf->w, rf->snap);
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
    if (up_proxy_header(up, &rf->peer) || up_queue(up, buf_data(&rf->head), buf_used(&rf->head))) {
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
    metrics_failure(rf->w, rf->be, err, what);
    log_warn("backend %s (%.*s): background cache refresh: %s: %s", rf->be->addr,
             (int)rf->t->name_len, rf->t->name, what, strerror(-err));
    if (health)
        health_report_failure(rf->w, rf->t, rf->be, strerror(-err));
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

/* The final response head r came. A 304 refreshes the entry; a 5xx the stale entry may stand
 * in for (stale-if-error) leaves it as it is; anything else is stored if the cache may keep
 * it, its body read (decoded) to its end. Interim heads are skipped. */
static void refresh_head(struct upconn *up, const struct h1_response *r)
{
    struct refresh *rf = up->user;

    if (r->status < 200)
        return;
    rf->started = true;
    health_report_success(rf->w, rf->be);
    if (pc_revalidated(rf->pc, r, NULL) || pc_stale_if_error(rf->pc, r)) {
        up_skip_body(up); /* ends the refresh (refresh_end_cb) */
        return;
    }
    pc_store_start(rf->pc, rf->t->label, r, NULL);
    if (!pc_storing(rf->pc)) /* not storable: its body is not worth reading */
        up_skip_body(up);
    up->decode = UP_DECODE;
}

static void refresh_body(struct upconn *up, const struct up_body *b)
{
    struct refresh *rf = up->user;

    pc_store_body(rf->pc, b->data, b->data_len);
    if (!pc_storing(rf->pc)) /* past the entry's limit: the rest is not worth reading */
        refresh_end(rf, false);
}

/* The whole response arrived (or the part this refresh wanted): a body being stored is
 * stored (the fill ends), then the refresh ends. */
static void refresh_end_cb(struct upconn *up, bool reusable)
{
    refresh_done(up->user, reusable);
}

static void refresh_failed(struct upconn *up, int err, const char *what)
{
    refresh_fail(up->user, err, what);
}

static void refresh_timeout(struct timer *tm, uint64_t now)
{
    struct refresh *rf = container_of(tm, struct refresh, tm);

    (void)now;
    refresh_fail(rf, -ETIMEDOUT, "not done within read_timeout");
}

/* Connected, sent, and try_timeout (never armed: refresh_connect) need nothing: the refresh's
 * own timer bounds it all. A 101 is refused by the reader (no up_tunnel here). */
static const struct up_ops refresh_ops = {
    .head = refresh_head,
    .body = refresh_body,
    .end = refresh_end_cb,
    .failed = refresh_failed,
    .background = true,
};

/* The target and a backend for r, counted in flight; false when there is none. */
static bool refresh_route(struct refresh *rf, const struct h1_request *r,
                          const struct sockaddr_in6 *peer)
{
    struct worker *w = rf->w;

    rf->t = route_match(&rf->snap->rt, r->host, r->host_len, r->path, r->path_len);
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

    if (rf) {
        rf->w = w;
        rf->snap = snap_use(w);
    }
    if (!rf || !refresh_route(rf, r, peer)) {
        log_debug("background cache refresh of %.*s: %s", (int)r->path_len, r->path,
                  rf ? "no route or no healthy backend" : "out of memory");
        if (rf)
            snap_unuse(w, rf->snap);
        free(rf);
        pc_state_free(p); /* the fill ends, abandoned */
        return;
    }
    rf->pc = p;
    rf->peer = *peer;
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
