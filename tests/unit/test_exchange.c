/* test_exchange.c: the exchange state machine of exchange.c (enum ex_state), with the client
 * session, the upstream client, the balancer, health, metrics, the cache, tunnels and the
 * worker's sockets stubbed. A request head is parsed with the real h1_parse_request and handed
 * to ex_start; the backend's side is played by calling the struct up_ops the exchange gave
 * up_get (head, body, end, failed, try_timeout) on fake upconns; the stubs record what the
 * session and the backends were told.
 *
 * How it links: exchange.c is #included, and the generic $(BUILD)/test_% rule links the whole
 * libringproxy.a after this file. An archive member is pulled only for a symbol still
 * undefined, so every function exchange.c calls from session_h1.c, respond.c, upstream.c,
 * upstream_head.c, worker.c, tunnel.c, pcache.c, local.c, metrics.c, balance.c and health.c
 * is defined here (one left out would pull its object in, whose other definitions then
 * clash: a link error, never a silent mix of real and stub). What exchange.c
 * calls from buf.c, h1.c, route.c, hooks.c, util.c and log.c comes from the archive: those
 * objects call nothing of the stubbed ones (checked with nm), so route_add_domain builds a
 * real route table. No dedicated link rule is needed.
 *
 * Freed exchanges are poisoned and kept until the test ends (not given back to malloc), and
 * every stub that takes a sock or an upconn checks it is a live one of ours: a read of a freed
 * exchange's ex->up then fails a test deterministically, with or without ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "../../engine/exchange.c"

/* ---- the world: a server, a worker, a client connection, three domains ------------------ */

static struct rp_server srv;
static struct worker wrk;
static struct conn cl;
static struct target *ta; /* a.test: three backends, retries */
static struct target *th; /* h.test: two backends, try_timeout with hedge */
static struct target *tn; /* n.test: one backend, upgrade = false */

/* ---- fake upstream connections ---------------------------------------------------------- */

#define N_UP 16

struct fake {
    struct upconn up; /* first: the stubs get &up or &up.sk */
    bool closed, released, reusable, fresh;
    int starts;
    char q[2048]; /* request bytes queued to it */
    uint32_t q_len;
};

static struct fake fakes[N_UP];
static int n_fakes;

/* What the stubs saw. */
static struct {
    /* knobs */
    bool pooled_next; /* the next up_get (not fresh) gives a pooled connection */
    int fail_starts;  /* that many up_start calls fail at once (as a socket(2) error does) */
    bool unsend_ok;   /* sock_unsend takes the send back */
    /* the session */
    int heads; /* conn_write_response_head */
    uint16_t head_status;
    uint8_t head_state; /* the exchange's state when its head was written */
    int interims;
    uint16_t interim_status;
    char out[1024]; /* body bytes queued to the client */
    uint32_t out_len;
    int closes; /* conn_close */
    int done;   /* conn_exchange_done */
    bool done_close, done_unread, done_ended;
    int continues;             /* conn_send_continue that would send a 100 */
    int continue_after_answer; /* ... after a final answer was written */
    int answers;               /* respond_* */
    int answer_status;
    /* metrics, health, balancing */
    int n_req;
    struct {
        const struct target *t;
        int status;
    } req[8];
    int retries;
    const struct target *retry_t;
    int failures, response_times;
    long inflight;
    int health_fail[8], health_ok, fallbacks;
    /* upstream client */
    int gets, gets_fresh, up_closes, releases, skips, up_timers;
    int tunnel_begins;
    /* exchanges */
    int ex_alloc, ex_freed;
    void *freed[16];
} R;

static struct fake *fake_of(const void *p)
{
    for (int i = 0; i < n_fakes; i++)
        if (p == &fakes[i].up || p == &fakes[i].up.sk) {
            if (fakes[i].closed || fakes[i].released)
                fail_msg("upconn %d used after it was closed or released", i);
            return &fakes[i];
        }
    fail_msg("%p is no upconn of ours (a freed exchange's?)", p);
    return NULL;
}

static struct upconn *upn(int i)
{
    assert_true(i < n_fakes);
    return &fakes[i].up;
}

/* ---- stubs: worker.c ---- */

void *slab_alloc(struct slab *sl)
{
    assert_ptr_equal(sl, &wrk.ex_slab);
    R.ex_alloc++;
    return calloc(1, sizeof(struct exchange));
}

void slab_free(struct slab *sl, void *p)
{
    assert_ptr_equal(sl, &wrk.ex_slab);
    assert_true(R.ex_freed < 16);
    memset(p, 0xa0, sizeof(struct exchange)); /* poisoned (aligned pointers), freed at the end */
    R.freed[R.ex_freed++] = p;
}

void sock_flush(struct worker *w, struct sock *s)
{
    assert_ptr_equal(w, &wrk);
    if (s != &cl.sk)
        fake_of(s);
}

void sock_recv_stop(struct worker *w, struct sock *s)
{
    assert_ptr_equal(w, &wrk);
    if (s != &cl.sk)
        fake_of(s);
}

void sock_recv_start(struct worker *w, struct sock *s)
{
    assert_ptr_equal(w, &wrk);
    if (s != &cl.sk)
        fake_of(s)->up.sk.recv = RECV_ARMED;
}

bool sock_unsend(struct worker *w, struct sock *s)
{
    (void)w;
    fake_of(s);
    return R.unsend_ok;
}

/* ---- stubs: upstream.c ---- */

struct upconn *up_get(struct worker *w, struct target *t, struct backend *be,
                      const struct up_ops *ops, void *user, bool fresh)
{
    struct fake *f;

    assert_ptr_equal(w, &wrk);
    assert_ptr_equal(ops, &ex_up_ops);
    assert_ptr_equal(user, &cl);
    assert_true(n_fakes < N_UP);
    f = &fakes[n_fakes++];
    memset(f, 0, sizeof(*f));
    f->up.w = w;
    f->up.t = t;
    f->up.be = be;
    f->up.ops = ops;
    f->up.user = user;
    f->fresh = fresh;
    if (!fresh && R.pooled_next) {
        R.pooled_next = false;
        f->up.reused = true;
        f->up.state = US_READY;
    } else {
        f->up.state = US_CONNECTING;
        f->up.needs_socket = true;
    }
    R.gets++;
    R.gets_fresh += fresh;
    return &f->up;
}

int up_queue(struct upconn *up, const void *p, uint32_t n)
{
    struct fake *f = fake_of(up);

    assert_true(f->q_len + n <= sizeof(f->q));
    memcpy(f->q + f->q_len, p, n);
    f->q_len += n;
    return 0;
}

/* No test target sends the PROXY protocol: nothing is queued. */
int up_proxy_header(struct upconn *up, const struct sockaddr_in6 *client)
{
    (void)fake_of(up);
    (void)client;
    return 0;
}

void up_start(struct upconn *up)
{
    struct fake *f = fake_of(up);

    f->starts++;
    if (!up->needs_socket)
        return;
    up->needs_socket = false;
    if (R.fail_starts > 0) {
        R.fail_starts--;
        up->ops->failed(up, -EMFILE, "cannot create a socket");
    }
}

void up_close(struct upconn *up)
{
    fake_of(up)->closed = true;
    R.up_closes++;
}

void up_release_to_pool(struct upconn *up, bool reusable)
{
    struct fake *f = fake_of(up);

    f->released = true;
    f->reusable = reusable;
    R.releases++;
}

void up_update_timer(struct upconn *up)
{
    fake_of(up);
    R.up_timers++;
}

void up_skip_body(struct upconn *up)
{
    fake_of(up);
    R.skips++;
}

/* ---- stubs: session_h1.c and upstream_head.c ---- */

void conn_close(struct conn *c)
{
    assert_ptr_equal(c, &cl);
    R.closes++;
    ex_abort(c); /* as the session does */
    c->sk.dead = true;
}

void conn_update_timer(struct conn *c)
{
    (void)c;
}

void conn_process(struct conn *c)
{
    (void)c;
}

void conn_resume_input(struct conn *c)
{
    (void)c;
}

void conn_exchange_done(struct conn *c, bool close, bool unread)
{
    R.done++;
    R.done_close = close;
    R.done_unread = unread;
    R.done_ended = c->ex == &c->w->no_ex;
}

void conn_queue_bytes(struct conn *c, const void *p, uint32_t n)
{
    (void)c;
    assert_true(R.out_len + n <= sizeof(R.out));
    memcpy(R.out + R.out_len, p, n);
    R.out_len += n;
}

void conn_flush_out(struct conn *c)
{
    (void)c;
}

void conn_write_response_head(struct conn *c, const struct h1_response *r,
                              const struct rp_hook_ctx *hk)
{
    (void)hk;
    R.heads++;
    R.head_status = r->status;
    R.head_state = c->ex->state;
}

void conn_write_interim(struct conn *c, const struct h1_response *r)
{
    (void)c;
    R.interims++;
    R.interim_status = r->status;
}

/* Only HTTP/2 streams get trailers apart: this client connection is HTTP/1.1. */
void h2s_trailers(struct conn *c, const struct h1_header *f, uint32_t n)
{
    (void)c;
    (void)f;
    (void)n;
    fail_msg("h2s_trailers on an HTTP/1.1 connection");
}

void conn_send_continue(struct conn *c, const struct h1_request *r)
{
    /* session_h1.c's conditions for queueing "HTTP/1.1 100 Continue" */
    if (r->expect_continue && r->minor == 1 && r->body != H1_BODY_NONE && !buf_used(&c->sk.in)) {
        R.continues++;
        R.continue_after_answer += R.answers > 0;
    }
}

void conn_format_peer(const struct sockaddr_in6 *sa, char *out, size_t cap)
{
    (void)sa;
    if (cap)
        out[0] = 0;
}

/* "METHOD PATH HTTP/1.1" and the backend's Host: enough to tell what was queued where. */
bool conn_write_upstream_head(const struct h1_request *r, struct upstream_head *h, struct buf *b)
{
    bool ok = true;

    buf_put(b, &ok, r->method, r->method_len);
    buf_put(b, &ok, " ", 1);
    buf_put(b, &ok, r->path, r->path_len);
    buf_put_str(b, &ok, " HTTP/1.1\r\nHost: ");
    buf_put(b, &ok, h->be->authority, h->be->authority_len);
    buf_put_str(b, &ok, h->upgrade ? "\r\nUpgrade: websocket\r\n\r\n" : "\r\n\r\n");
    return ok;
}

/* ---- stubs: respond.c (which counts the answer in the exchange's domain while it lives) ---- */

static void answered(struct conn *c, int status)
{
    metrics_request(c->w, ex_active(c->ex) ? c->ex->t : NULL, status);
    R.answers++;
    R.answer_status = status;
}

void respond_error(struct conn *c, int status)
{
    answered(c, status);
    c->close_after = true;
    c->linger = true;
}

void respond_unread(struct conn *c, const struct h1_request *r, const struct rp_response *a)
{
    (void)r;
    answered(c, a->status);
}

void respond_unread_text(struct conn *c, const struct h1_request *r, int status, const char *body)
{
    (void)r;
    (void)body;
    answered(c, status);
}

/* ---- stubs: local.c, pcache.c (no local endpoints, no cache here) ---- */

bool local_start(struct conn *c, const struct h1_request *r, const char *head, uint32_t head_len)
{
    (void)c, (void)r, (void)head, (void)head_len;
    fail_msg("local_start without local endpoints");
    return false;
}

void local_feed_body(struct conn *c)
{
    (void)c;
    fail_msg("local_feed_body");
}

void local_admin_request(struct conn *c, const struct h1_request *r, const char *head,
                         uint32_t head_len)
{
    (void)c, (void)r, (void)head, (void)head_len;
    fail_msg("local_admin_request on a proxy listener");
}

enum pc_result pc_request(struct conn *c, const struct h1_request *r)
{
    (void)c, (void)r;
    fail_msg("pc_request without a cache");
    return PC_BYPASS;
}

bool pc_intercept_response(struct conn *c, const struct h1_response *r)
{
    (void)c, (void)r;
    fail_msg("pc_intercept_response without cache state");
    return false;
}

bool pc_serve_stale_on_error(struct conn *c)
{
    (void)c;
    fail_msg("pc_serve_stale_on_error without cache state");
    return false;
}

void pc_store_body(struct pc_state *p, const char *data, size_t n)
{
    (void)p, (void)data, (void)n;
    fail_msg("pc_store_body without cache state");
}

void pc_store_end(struct pc_state *p)
{
    (void)p;
    fail_msg("pc_store_end without cache state");
}

bool pc_storing(const struct pc_state *p)
{
    return p != NULL;
}

void pc_free(struct exchange *ex)
{
    assert_null(ex->pc);
}

/* ---- stubs: tunnel.c ---- */

/* tunnel.c's rule, shortened: HTTP/1.1, no body, Connection: upgrade and one Upgrade field,
 * on a domain that tunnels. */
const struct h1_header *tunnel_wanted(const struct h1_request *r, const struct target *t)
{
    const struct h1_header *proto = NULL;
    bool asked = false;

    if (t->no_upgrade || r->minor == 0 || r->body != H1_BODY_NONE)
        return NULL;
    for (uint32_t i = 0; i < r->n_headers; i++) {
        if (r->headers[i].kind == H1_H_UPGRADE)
            proto = &r->headers[i];
        else if (r->headers[i].kind == H1_H_CONNECTION)
            asked |= h1_list_has(r->headers[i].value, r->headers[i].value_len, "upgrade");
    }
    return asked ? proto : NULL;
}

bool tunnel_response_ok(const struct h1_response *r)
{
    for (uint32_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].kind == H1_H_UPGRADE && r->headers[i].value_len)
            return true;
    return false;
}

void tunnel_begin(struct conn *c, struct upconn *up, const struct h1_response *r)
{
    (void)r;
    fake_of(up);
    assert_ptr_equal(up, c->ex->up);
    R.tunnel_begins++;
    c->ex->state = EX_TUNNEL;
}

void tunnel_sent(struct conn *c)
{
    (void)c;
}

void tunnel_backend_data(struct conn *c, struct upconn *up, const char *p, uint32_t n)
{
    (void)c, (void)up, (void)p, (void)n;
}

void tunnel_backend_eof(struct conn *c)
{
    (void)c;
}

/* ---- stubs: metrics.c, balance.c, health.c ---- */

void metrics_request(struct worker *w, const struct target *t, int status)
{
    (void)w;
    assert_true(R.n_req < 8);
    R.req[R.n_req].t = t;
    R.req[R.n_req++].status = status;
}

void metrics_failure(struct worker *w, const struct backend *be, int err, const char *what)
{
    (void)w, (void)be, (void)err, (void)what;
    R.failures++;
}

void metrics_response_time(struct worker *w, const struct backend *be, uint64_t ns)
{
    (void)w, (void)be, (void)ns;
    R.response_times++;
}

void metrics_retry(struct worker *w, const struct target *t)
{
    (void)w;
    R.retries++;
    R.retry_t = t;
}

void metrics_inflight(struct worker *w, int delta)
{
    (void)w;
    R.inflight += delta;
}

/* accesslog.c: no log configured here, so every exchange passes alog_begin and none gets a
 * record (alog_end, which only a record brings, fails the test) */
const struct h1_request *alog_set_request(struct worker *w, const struct h1_request *r)
{
    (void)w;
    (void)r;
    return NULL;
}
void alog_begin(struct conn *c, const struct h1_request *r)
{
    (void)r;
    assert_null(c->ex->log);
}
void alog_end(struct conn *c)
{
    (void)c;
    fail();
}
void alog_try_start(struct exchange *ex, const struct backend *be, uint64_t ns, bool reused)
{
    (void)be;
    (void)ns;
    (void)reused;
    assert_null(ex->log);
}
void alog_try_event(struct exchange *ex, const struct backend *be, int status, bool end)
{
    (void)ex;
    (void)be;
    (void)status;
    (void)end;
    fail();
}

/* The first healthy backend not tried yet, in configuration order. */
struct backend *bal_pick(struct bal_worker *bw, const struct target *t,
                         const struct sockaddr *client, uint64_t exclude)
{
    assert_ptr_equal(bw, &wrk.bal);
    assert_ptr_equal(client, &cl.peer);
    for (uint32_t i = 0; i < t->n_backends; i++)
        if (!(exclude & (1ull << i)) && atomic_load(&t->backends[i]->healthy))
            return t->backends[i];
    return NULL;
}

void bal_observe(struct backend *be, uint64_t now_ns, uint64_t rtt_ns)
{
    (void)be, (void)now_ns, (void)rtt_ns;
}

struct snapshot *snap_use(struct worker *w)
{
    w->snap_users++;
    return w->snap;
}

void snap_unuse(struct worker *w, struct snapshot *snap)
{
    assert_ptr_equal(snap, w->snap); /* no reload here */
    w->snap_users--;
}

void health_report_failure(struct worker *w, const struct target *t, struct backend *be,
                           const char *why)
{
    (void)w, (void)t, (void)why;
    assert_true(be->index < 8);
    R.health_fail[be->index]++;
}

void health_report_success(struct worker *w, struct backend *be)
{
    (void)w, (void)be;
    R.health_ok++;
}

struct backend *health_fallback(struct worker *w, const struct target *t, uint64_t exclude)
{
    (void)w, (void)t, (void)exclude;
    R.fallbacks++;
    return NULL;
}

/* ---- driving it ------------------------------------------------------------------------- */

static char req_buf[2048];
static struct h1_header req_hdrs[H1_HEADERS_CAP];
static struct h1_request req;
static struct h1_header resp_hdrs[32];
static struct h1_response resp;

/* The session's part: parses a request head, leaves what follows it (body bytes) in the
 * connection's input, and starts its exchange. */
static void start(const char *msg)
{
    size_t n = strlen(msg);
    int status = 0, rc;

    assert_true(n < sizeof(req_buf));
    memcpy(req_buf, msg, n);
    memset(&req, 0, sizeof(req));
    req.headers = req_hdrs;
    req.headers_cap = H1_HEADERS_CAP;
    rc = h1_parse_request(req_buf, n, &req, &srv.lim, &status);
    assert_true(rc > 0);
    if ((size_t)rc < n)
        assert_int_equal(buf_append(&cl.sk.in, req_buf + rc, (uint32_t)(n - (size_t)rc)), 0);
    ex_start(&cl, &req, req_buf, (uint32_t)rc);
}

/* The backend's part, through the callbacks the exchange gave up_get. */
static void connected(struct upconn *up)
{
    up->state = US_READY;
}

static void head(struct upconn *up, const char *h)
{
    int rc;

    memset(&resp, 0, sizeof(resp));
    resp.headers = resp_hdrs;
    resp.headers_cap = 32;
    rc = h1_parse_response(h, strlen(h), &resp, &srv.lim, (enum h1_method)up->method);
    assert_int_equal(rc, (int)strlen(h));
    up->got_bytes = true;
    up->ops->head(up, &resp);
}

static void body(struct upconn *up, const char *s)
{
    struct up_body b = {.raw = (char *)s, .data = s};

    b.raw_len = b.data_len = (uint32_t)strlen(s);
    up->got_bytes = true;
    up->ops->body(up, &b);
    up->ops->flush(up);
}

static void end(struct upconn *up, bool reusable)
{
    up->ops->end(up, reusable);
}

static void up_fails(struct upconn *up, int err)
{
    up->ops->failed(up, err, "test failure");
}

static struct exchange *cur(void)
{
    assert_ptr_not_equal(cl.ex, &wrk.no_ex);
    return cl.ex;
}

static const char *queued(int i)
{
    static char s[sizeof(fakes[0].q) + 1];

    assert_true(i < n_fakes);
    memcpy(s, fakes[i].q, fakes[i].q_len);
    s[fakes[i].q_len] = 0;
    return s;
}

static void expect_no_answer(void)
{
    assert_int_equal(R.answers, 0);
    assert_int_equal(R.closes, 0);
}

/* What every finished test must leave: the exchange ended and freed, the worker's no_ex
 * untouched, every backend connection closed or released, nothing counted in flight. */
static void check_clean(void)
{
    assert_ptr_equal(cl.ex, &wrk.no_ex);
    assert_int_equal(wrk.no_ex.state, EX_IDLE);
    assert_null(wrk.no_ex.up);
    assert_null(wrk.no_ex.t);
    assert_int_equal(R.ex_alloc, R.ex_freed);
    assert_int_equal(R.inflight, 0);
    for (int i = 0; i < n_fakes; i++)
        if (!fakes[i].closed && !fakes[i].released)
            fail_msg("upconn %d neither closed nor released", i);
    for (uint32_t i = 0; i < srv.rt.n_backends; i++)
        if (atomic_load(&srv.rt.backends[i]->inflight))
            fail_msg("backend %s still counts %u in flight", srv.rt.backends[i]->addr,
                     atomic_load(&srv.rt.backends[i]->inflight));
}

static struct target *target_named(const char *name)
{
    for (uint32_t i = 0; i < srv.rt.n_domains; i++)
        if (!strcmp(srv.rt.domains[i]->label, name))
            return srv.rt.domains[i];
    fail_msg("no domain %s", name);
    return NULL;
}

static struct snapshot snap;

static int group_setup(void **state)
{
    static const rp_backend_config a[] = {
        {"http://127.0.0.1:8001", 1}, {"http://127.0.0.1:8002", 1}, {"http://127.0.0.1:8003", 1}};
    static const rp_backend_config h[] = {{"http://127.0.0.1:8011", 1},
                                          {"http://127.0.0.1:8012", 1}};
    static const rp_backend_config n[] = {{"http://127.0.0.1:8021", 1}};
    const rp_domain_config da = {.domain = "a.test", .backends = a, .n_backends = 3};
    const rp_domain_config dh = {
        .domain = "h.test", .backends = h, .n_backends = 2, .try_timeout_ms = 100, .hedge = true};
    const rp_domain_config dn = {
        .domain = "n.test", .backends = n, .n_backends = 1, .no_upgrade = true};

    (void)state;
    rp_log_set_level(RP_LOG_ERROR); /* the exchange warns about every failure */
    assert_int_equal(route_add_domain(&srv.rt, &da), 0);
    assert_int_equal(route_add_domain(&srv.rt, &dh), 0);
    assert_int_equal(route_add_domain(&srv.rt, &dn), 0);
    ta = target_named("a.test");
    th = target_named("h.test");
    tn = target_named("n.test");
    assert_int_equal(ta->max_retries, 2);
    srv.lim =
        (struct h1_limits){.max_head_bytes = 8192, .max_headers = 100, .max_target_len = 4096};
    srv.cfg.max_body_bytes = 1 << 20;
    snap.rt = srv.rt; /* the workers' view of it (shares its targets: freed once, by srv) */
    snap.cfg = srv.cfg;
    snap.lim = srv.lim;
    snap.gen = 1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    route_table_fini(&srv.rt);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&R, 0, sizeof(R));
    memset(fakes, 0, sizeof(fakes));
    n_fakes = 0;
    memset(&wrk, 0, sizeof(wrk));
    wrk.s = &srv;
    wrk.snap = &snap;
    memset(&cl, 0, sizeof(cl));
    cl.w = &wrk;
    cl.ex = &wrk.no_ex;
    cl.peer.sin6_family = AF_INET6;
    for (uint32_t i = 0; i < srv.rt.n_backends; i++) {
        atomic_store(&srv.rt.backends[i]->inflight, 0);
        atomic_store(&srv.rt.backends[i]->healthy, 1);
    }
    return 0;
}

static int teardown(void **state)
{
    bool freed = false;

    (void)state;
    for (int i = 0; i < R.ex_freed; i++) {
        freed |= R.freed[i] == cl.ex;
        free(R.freed[i]);
    }
    if (cl.ex != &wrk.no_ex && !freed) { /* a failed test's exchange: freed, nothing called */
        buf_free(&cl.ex->replay);
        free(cl.ex->more);
        free(cl.ex);
    }
    cl.ex = &wrk.no_ex;
    buf_free(&cl.sk.in);
    buf_free(&cl.sk.out.pending);
    return 0;
}

#define GET_A "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n"
#define OK5 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

/* ---- the tests -------------------------------------------------------------------------- */

static void get_to_completion(void **state)
{
    struct upconn *up;

    (void)state;
    start(GET_A);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    assert_ptr_equal(cur()->t, ta);
    assert_true(cur()->req_done);
    assert_int_equal(R.gets, 1);
    assert_int_equal(R.gets_fresh, 0);
    up = upn(0);
    assert_ptr_equal(cur()->up, up);
    assert_ptr_equal(up->be, ta->backends[0]);
    assert_ptr_equal(cur()->be, ta->backends[0]);
    assert_int_equal(fakes[0].starts, 1);
    assert_string_equal(queued(0), "GET /x HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n");
    assert_int_equal(up->method, H1_M_GET);
    assert_true(up->req_whole);
    assert_int_equal(atomic_load(&ta->backends[0]->inflight), 1);
    assert_int_equal(R.inflight, 1);

    connected(up);
    head(up, OK5);
    assert_int_equal(cur()->state, EX_RESPONSE);
    assert_int_equal(R.heads, 1);
    assert_int_equal(R.head_status, 200);
    assert_int_equal(R.head_state, EX_RESPONSE);
    assert_int_equal(R.n_req, 1);
    assert_ptr_equal(R.req[0].t, ta);
    assert_int_equal(R.req[0].status, 200);
    assert_int_equal(R.health_ok, 1);
    assert_int_equal(R.response_times, 1);
    assert_int_equal(up->decode, UP_RAW);

    body(up, "hello");
    assert_int_equal(R.out_len, 5);
    assert_memory_equal(R.out, "hello", 5);
    assert_int_equal(R.done, 0);

    end(up, true);
    assert_true(fakes[0].released);
    assert_true(fakes[0].reusable);
    assert_int_equal(R.done, 1);
    assert_true(R.done_ended); /* ex_end ran before the session was told */
    assert_false(R.done_close);
    assert_false(R.done_unread);
    expect_no_answer();
    assert_int_equal(R.retries, 0);
    check_clean();
}

/* Connection: close, or an HTTP/1.0 client: the client connection closes after the answer. */
static void closing_client(void **state)
{
    (void)state;
    start("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    connected(upn(0));
    head(upn(0), OK5);
    body(upn(0), "hello");
    end(upn(0), true);
    assert_int_equal(R.done, 1);
    assert_true(R.done_close);
    assert_false(R.done_unread);
    assert_true(fakes[0].reusable); /* the backend connection is pooled all the same */
    check_clean();
}

static void connect_refused_retries_another_backend(void **state)
{
    (void)state;
    start(GET_A);
    assert_int_equal(upn(0)->state, US_CONNECTING);
    up_fails(upn(0), -ECONNREFUSED);
    assert_true(fakes[0].closed);
    assert_int_equal(R.health_fail[ta->backends[0]->index], 1);
    assert_int_equal(R.gets, 2);
    assert_int_equal(R.retries, 1);
    assert_ptr_equal(R.retry_t, ta);
    assert_ptr_equal(upn(1)->be, ta->backends[1]);
    assert_false(fakes[1].fresh);
    assert_int_equal(fakes[1].starts, 1);
    assert_ptr_equal(cur()->up, upn(1));
    assert_ptr_equal(cur()->be, ta->backends[1]);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    assert_int_equal(cur()->attempts, 2);
    /* the whole request again, from the replay copy */
    assert_string_equal(queued(1), "GET /x HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n");
    assert_int_equal(atomic_load(&ta->backends[0]->inflight), 0);
    assert_int_equal(atomic_load(&ta->backends[1]->inflight), 1);
    expect_no_answer();

    connected(upn(1));
    head(upn(1), OK5);
    body(upn(1), "hello");
    end(upn(1), true);
    assert_true(fakes[1].reusable);
    assert_int_equal(R.done, 1);
    assert_false(R.done_close);
    expect_no_answer();
    check_clean();
}

/* Every backend fails: one attempt at each (max_retries 2), then the answer, counted in the
 * domain (written before ex_end). */
static void every_backend_fails(int err, int status)
{
    start(GET_A);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(R.gets, i + 1);
        assert_ptr_equal(upn(i)->be, ta->backends[i]);
        assert_int_equal(R.answers, 0);
        up_fails(upn(i), err);
    }
    assert_int_equal(R.gets, 3);
    assert_int_equal(R.retries, 2);
    assert_int_equal(R.failures, 3);
    assert_int_equal(R.answers, 1);
    assert_int_equal(R.answer_status, status);
    assert_int_equal(R.n_req, 1);
    assert_ptr_equal(R.req[0].t, ta);
    assert_int_equal(R.req[0].status, status);
    assert_int_equal(wrk.errors, 1);
    assert_int_equal(R.done, 0); /* respond_error closes the connection itself */
    assert_int_equal(R.closes, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(R.health_fail[ta->backends[i]->index], 1);
    check_clean();
}

static void every_backend_refuses_502(void **state)
{
    (void)state;
    every_backend_fails(-ECONNREFUSED, 502);
}

static void every_backend_times_out_504(void **state)
{
    (void)state;
    every_backend_fails(-ETIMEDOUT, 504);
}

/* A POST on a pooled connection that died after its send completed: the backend may have
 * acted on it, so it is not sent again. */
static void stale_pooled_post_is_not_replayed(void **state)
{
    (void)state;
    R.pooled_next = true;
    start("POST /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(upn(0)->reused);
    assert_true(cur()->req_done);
    assert_string_equal(queued(0), "POST /f HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\nhello");
    upn(0)->req_sent = true;
    up_fails(upn(0), -ECONNRESET);
    assert_int_equal(R.gets, 1);
    assert_int_equal(R.retries, 0);
    assert_int_equal(R.answers, 1);
    assert_int_equal(R.answer_status, 502);
    assert_ptr_equal(R.req[0].t, ta);
    assert_int_equal(R.health_fail[ta->backends[0]->index], 0); /* stale: says nothing */
    check_clean();
}

/* The same POST whose bytes provably never reached the kernel: it goes again, fresh. */
static void stale_pooled_unsent_post_is_replayed(void **state)
{
    (void)state;
    R.pooled_next = true;
    start("POST /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_false(upn(0)->req_sent);
    up_fails(upn(0), -ECONNRESET);
    assert_int_equal(R.gets, 2);
    assert_true(fakes[1].fresh);
    assert_ptr_equal(upn(1)->be, ta->backends[0]);
    assert_string_equal(queued(1), "POST /f HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\nhello");
    expect_no_answer();
    connected(upn(1));
    head(upn(1), OK5);
    end(upn(1), true);
    assert_int_equal(R.done, 1);
    check_clean();
}

/* A GET that met a stale pooled connection goes again once, on a fresh connection to the same
 * backend; not a failed attempt of that backend. */
static void stale_pooled_get_is_replayed_fresh(void **state)
{
    (void)state;
    R.pooled_next = true;
    start(GET_A);
    assert_true(upn(0)->reused);
    upn(0)->req_sent = true;
    up_fails(upn(0), -ECONNRESET);
    assert_true(fakes[0].closed);
    assert_int_equal(R.gets, 2);
    assert_int_equal(R.gets_fresh, 1);
    assert_true(fakes[1].fresh);
    assert_ptr_equal(upn(1)->be, ta->backends[0]);
    assert_int_equal(R.retries, 1);
    assert_int_equal(R.health_fail[ta->backends[0]->index], 0);
    assert_true(cur()->reuse_retried);
    assert_int_equal(cur()->attempts, 1);
    assert_string_equal(queued(1), "GET /x HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n");
    expect_no_answer();

    connected(upn(1));
    head(upn(1), OK5);
    body(upn(1), "hello");
    end(upn(1), true);
    assert_true(fakes[1].reusable);
    assert_int_equal(R.done, 1);
    check_clean();
}

static void failure_mid_response_closes_the_client(void **state)
{
    (void)state;
    start(GET_A);
    connected(upn(0));
    head(upn(0), "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    body(upn(0), "hello");
    assert_int_equal(cur()->state, EX_RESPONSE);
    up_fails(upn(0), -ECONNRESET);
    assert_true(fakes[0].closed);
    assert_int_equal(R.closes, 1);
    assert_true(cl.sk.dead);
    assert_int_equal(R.gets, 1); /* no retry */
    assert_int_equal(R.retries, 0);
    assert_int_equal(R.answers, 0);
    assert_int_equal(R.done, 0);
    check_clean();
}

static void interim_then_final(void **state)
{
    (void)state;
    start(GET_A);
    connected(upn(0));
    head(upn(0), "HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(R.interims, 1);
    assert_int_equal(R.interim_status, 100);
    assert_int_equal(R.heads, 0);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    head(upn(0), "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
    assert_int_equal(R.interims, 2);
    assert_int_equal(R.interim_status, 103);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    head(upn(0), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_int_equal(cur()->state, EX_RESPONSE);
    assert_int_equal(R.heads, 1);
    assert_int_equal(R.head_status, 204);
    end(upn(0), true);
    assert_int_equal(R.done, 1);
    assert_true(fakes[0].reusable);
    check_clean();
}

#define UPGRADE_REQ(host)                                                                          \
    "GET /ws HTTP/1.1\r\nHost: " host "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
#define SWITCH                                                                                     \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

static void switch_with_upgrade_tunnels(void **state)
{
    (void)state;
    start(UPGRADE_REQ("a.test"));
    assert_true(cur()->upgrade);
    connected(upn(0));
    head(upn(0), SWITCH);
    assert_int_equal(R.tunnel_begins, 1);
    assert_int_equal(cur()->state, EX_TUNNEL);
    assert_int_equal(R.heads, 0);
    assert_int_equal(R.interims, 0);
    expect_no_answer();
    ex_abort(&cl); /* the session ends a tunnel this way */
    assert_true(fakes[0].closed);
    check_clean();
}

/* A 101 the request did not ask for (or on a domain with upgrade = false) starts nothing and
 * writes nothing: the upstream reader fails the attempt (-EPROTO), which goes elsewhere. */
static void switch_without_upgrade_does_not_tunnel(void **state)
{
    (void)state;
    start(GET_A);
    assert_false(cur()->upgrade);
    connected(upn(0));
    head(upn(0), SWITCH);
    assert_int_equal(R.tunnel_begins, 0);
    assert_int_equal(R.heads, 0);
    assert_int_equal(R.interims, 0);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    up_fails(upn(0), -EPROTO);
    assert_int_equal(R.gets, 2);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    ex_abort(&cl);
    check_clean();

    start(UPGRADE_REQ("n.test")); /* the domain does not tunnel */
    assert_ptr_equal(cur()->t, tn);
    assert_false(cur()->upgrade);
    connected(upn(2));
    head(upn(2), SWITCH);
    assert_int_equal(R.tunnel_begins, 0);
    assert_int_equal(R.heads, 0);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    up_fails(upn(2), -EPROTO);
    assert_int_equal(R.answer_status, 502); /* n.test's only backend */
    check_clean();
}

/* try_timeout with hedge: a second attempt at another backend races the first. */
static void hedge_start(void)
{
    start("GET /h HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_ptr_equal(cur()->t, th);
    connected(upn(0));
    upn(0)->req_sent = true;
    upn(0)->ops->try_timeout(upn(0));
    assert_int_equal(R.gets, 2);
    assert_ptr_equal(cur()->up, upn(0));
    assert_ptr_equal(cur()->up2, upn(1));
    assert_ptr_equal(upn(1)->be, th->backends[1]);
    assert_false(fakes[1].fresh);
    assert_int_equal(fakes[1].starts, 1);
    assert_false(fakes[0].closed);
    assert_string_equal(queued(1), "GET /h HTTP/1.1\r\nHost: 127.0.0.1:8011\r\n\r\n");
    assert_int_equal(R.health_fail[th->backends[0]->index], 1);
    assert_int_equal(R.failures, 1);
    assert_int_equal(R.up_timers, 1); /* the slow attempt goes on under read_timeout */
    assert_int_equal(atomic_load(&th->backends[0]->inflight), 1);
    assert_int_equal(atomic_load(&th->backends[1]->inflight), 1);
    assert_int_equal(cur()->state, EX_UPSTREAM);
    expect_no_answer();
}

static void hedge_second_attempt_wins(void **state)
{
    (void)state;
    hedge_start();
    connected(upn(1));
    head(upn(1), OK5);
    assert_true(fakes[0].closed);
    assert_false(fakes[1].closed);
    assert_ptr_equal(cur()->up, upn(1));
    assert_null(cur()->up2);
    assert_ptr_equal(cur()->be, th->backends[1]);
    assert_int_equal(atomic_load(&th->backends[0]->inflight), 0);
    assert_int_equal(atomic_load(&th->backends[1]->inflight), 1);
    assert_int_equal(R.heads, 1);
    body(upn(1), "hello");
    end(upn(1), true);
    assert_true(fakes[1].released);
    assert_true(fakes[1].reusable);
    assert_int_equal(R.done, 1);
    check_clean();
}

static void hedge_first_attempt_wins(void **state)
{
    (void)state;
    hedge_start();
    head(upn(0), OK5);
    assert_true(fakes[1].closed);
    assert_false(fakes[0].closed);
    assert_ptr_equal(cur()->up, upn(0));
    assert_null(cur()->up2);
    assert_ptr_equal(cur()->be, th->backends[0]);
    assert_int_equal(atomic_load(&th->backends[1]->inflight), 0);
    end(upn(0), true);
    assert_true(fakes[0].reusable);
    assert_int_equal(R.done, 1);
    check_clean();
}

/* The client goes away while two attempts race: both are closed. */
static void hedge_abort_closes_both(void **state)
{
    (void)state;
    hedge_start();
    ex_abort(&cl);
    assert_true(fakes[0].closed);
    assert_true(fakes[1].closed);
    check_clean();
}

/* Without hedge the slow attempt is replaced; a POST is never sent twice, so it waits. */
static void try_timeout_replaces_or_waits(void **state)
{
    (void)state;
    start(GET_A);
    connected(upn(0));
    upn(0)->ops->try_timeout(upn(0));
    assert_true(fakes[0].closed);
    assert_int_equal(R.gets, 2);
    assert_int_equal(R.retries, 1);
    assert_ptr_equal(cur()->up, upn(1));
    assert_null(cur()->up2);
    assert_ptr_equal(cur()->be, ta->backends[1]);
    head(upn(1), OK5);
    end(upn(1), true);
    check_clean();

    start("POST /f HTTP/1.1\r\nHost: h.test\r\nContent-Length: 2\r\n\r\nab");
    connected(upn(2));
    upn(2)->ops->try_timeout(upn(2));
    assert_int_equal(R.gets, 3);
    assert_false(fakes[2].closed);
    assert_null(cur()->up2);
    head(upn(2), OK5);
    end(upn(2), true);
    check_clean();
}

/* The backend answers before the request body has all arrived: its connection is not pooled
 * (the request was not all sent) and the session discards the rest of the body. */
static void response_ends_before_the_request_body(void **state)
{
    (void)state;
    start("POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc");
    assert_false(cur()->req_done);
    assert_int_equal(cur()->req_left, 7);
    assert_int_equal(buf_used(&cl.sk.in), 0);
    assert_string_equal(queued(0), "POST /up HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\nabc");
    assert_false(upn(0)->req_whole);
    connected(upn(0));
    head(upn(0), "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(R.head_status, 413);
    assert_true(cur()->close_client);
    end(upn(0), true);
    assert_true(fakes[0].released);
    assert_false(fakes[0].reusable);
    assert_int_equal(R.done, 1);
    assert_true(R.done_unread);
    assert_true(R.done_close);
    check_clean();
}

/* The rest of the body arrives (ex_feed_body) before the response: then the connection is
 * reusable and nothing is left unread. */
static void request_body_in_two_parts(void **state)
{
    (void)state;
    start("POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(buf_append(&cl.sk.in, "defghijNEXT", 11), 0);
    ex_feed_body(&cl);
    assert_true(cur()->req_done);
    assert_true(upn(0)->req_whole);
    assert_int_equal(buf_used(&cl.sk.in), 4); /* the next request's bytes stay */
    assert_string_equal(queued(0), "POST /up HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\nabcdefghij");
    connected(upn(0));
    head(upn(0), OK5);
    end(upn(0), true);
    assert_true(fakes[0].reusable);
    assert_false(R.done_unread);
    assert_false(R.done_close);
    check_clean();
}

/* Found by this test (fixed): a stale pooled GET is replayed on a fresh connection (ex_connect(c,
 * true) in ex_upstream_failed); when that connection's start fails at once (socket(2) failing in
 * sock_open without IORING_OP_SOCKET) and so does every retry, the nested failure answers 502
 * and frees the exchange, then the outer call reads ex->up of the freed exchange
 * ("if (ex->up) sock_flush(...)", missing the c->ex == ex check its siblings have). */
static void stale_replay_failing_at_once(void **state)
{
    (void)state;
    R.pooled_next = true;
    start(GET_A);
    upn(0)->req_sent = true;
    R.fail_starts = 99;
    up_fails(upn(0), -ECONNRESET);
    assert_int_equal(R.gets, 4); /* fresh on backend 0, then backends 1 and 2 */
    assert_int_equal(R.answers, 1);
    assert_int_equal(R.answer_status, 502);
    check_clean();
}

/* Found by this test (fixed): a request with Expect: 100-continue whose every attempt fails at once
 * in ex_start's ex_connect is answered 502, and ex_start then calls conn_send_continue, which
 * queues "HTTP/1.1 100 Continue" after the final 502 (RFC 9110 15.2: no 1xx after the final
 * response). */
static void continue_after_an_answer(void **state)
{
    (void)state;
    R.fail_starts = 99;
    start("POST /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(R.gets, 3);
    assert_int_equal(R.answers, 1);
    assert_int_equal(R.answer_status, 502);
    assert_int_equal(R.continue_after_answer, 0);
    check_clean();
}

/* The same request with a start that works: the 100 goes out, before any answer. */
static void continue_before_the_body(void **state)
{
    (void)state;
    start("POST /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(R.continues, 1);
    assert_int_equal(R.continue_after_answer, 0);
    assert_false(cur()->req_done);
    ex_abort(&cl);
    check_clean();
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(get_to_completion),
        T(closing_client),
        T(connect_refused_retries_another_backend),
        T(every_backend_refuses_502),
        T(every_backend_times_out_504),
        T(stale_pooled_post_is_not_replayed),
        T(stale_pooled_unsent_post_is_replayed),
        T(stale_pooled_get_is_replayed_fresh),
        T(failure_mid_response_closes_the_client),
        T(interim_then_final),
        T(switch_with_upgrade_tunnels),
        T(switch_without_upgrade_does_not_tunnel),
        T(hedge_second_attempt_wins),
        T(hedge_first_attempt_wins),
        T(hedge_abort_closes_both),
        T(try_timeout_replaces_or_waits),
        T(response_ends_before_the_request_body),
        T(request_body_in_two_parts),
        T(continue_before_the_body),
        T(stale_replay_failing_at_once),
        T(continue_after_an_answer),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
