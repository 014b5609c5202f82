/* pcache.c: the engine's use of the response cache (cache/). It owns the library's calls
 * (rp_set_proxy_cache, purges, stats, the hooks' cache controls), the request path's cache
 * filter (lookups, hits served, request collapsing, invalidation), the cache's state of one
 * request (struct pc_state: revalidating and storing a response), which exchanges (exchange.c)
 * and background refreshes (refresh.c) both drive, and the admin API. The store, its policy
 * and its compression threads are in cache/. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../cache/cache.h"
#include "internal.h"
#include "log.h"

static uint32_t method_bits(const char *const *m, size_t n, int *bad)
{
    uint32_t bits = 0;

    for (size_t i = 0; i < n; i++) {
        uint32_t b = m[i] ? cache_method_bit(m[i], strlen(m[i])) : 0;
        if (!b || b == CACHE_M_OTHER)
            *bad = (int)i + 1;
        bits |= b;
    }
    return bits;
}

int rp_set_proxy_cache(rp_server *s, const rp_cache_config *cfg)
{
    rp_cache_config def = {0};
    struct cache_config cc;
    struct cache_rule *rules = NULL;
    uint16_t *statuses = NULL;
    size_t n_status = 0, k = 0;
    struct cache *c;
    int rc = 0;

    if (!s)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    if (!cfg)
        cfg = &def;
    if (cfg->compress_level < 0 || cfg->compress_level > 12 || cfg->compress_threads < 0 ||
        cfg->compress_threads > 64 || (cfg->n_rules && !cfg->rules)) {
        log_error("cache: compress_level must be 1-12 and compress_threads 0-64");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_rules; i++)
        n_status += cfg->rules[i].n_status_only;
    rules = calloc(cfg->n_rules ? cfg->n_rules : 1, sizeof(*rules));
    statuses = calloc(n_status ? n_status : 1, sizeof(*statuses));
    if (!rules || !statuses) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const rp_cache_rule *r = &cfg->rules[i];
        int bad = 0;
        if (!r->path_prefix || r->path_prefix[0] != '/') {
            log_error("cache rule %zu: path_prefix must start with /", i + 1);
            rc = -EINVAL;
            goto out;
        }
        rules[i].path_prefix = r->path_prefix;
        rules[i].max_age_ms = r->max_age_ms;
        rules[i].methods = method_bits(r->methods, r->n_methods, &bad);
        if (bad) {
            log_error("cache rule %zu: method %d is not one the cache serves (GET, HEAD)", i + 1,
                      bad);
            rc = -EINVAL;
            goto out;
        }
        rules[i].status_only = statuses + k;
        for (size_t j = 0; j < r->n_status_only; j++) {
            if (r->status_only[j] < 200 || r->status_only[j] > 599) {
                log_error("cache rule %zu: status %d is not 200-599", i + 1, r->status_only[j]);
                rc = -EINVAL;
                goto out;
            }
            statuses[k++] = (uint16_t)r->status_only[j];
        }
        rules[i].n_status_only = (uint32_t)r->n_status_only;
        rules[i].max_bytes = r->max_bytes;
    }
    cc = (struct cache_config){
        .default_max_age_ms = cfg->default_max_age_ms,
        .max_total_bytes = cfg->max_total_bytes,
        .max_entries = cfg->max_entries,
        .max_entry_size = cfg->max_entry_size,
        .pre_compress = cfg->pre_compress,
        .compress_level = cfg->compress_level,
        .compress_min_len = cfg->compress_min_len,
        .stale_while_revalidate_ms = cfg->stale_while_revalidate_ms,
        .rules = rules,
        .n_rules = (uint32_t)cfg->n_rules,
    };
    c = cache_new(&cc); /* copies the rules and their strings */
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    cache_free(s->cache);
    s->cache = c;
    s->cache_threads = cfg->compress_threads ? cfg->compress_threads : 1;
    s->cache_lock_ms = cfg->lock_timeout_ms ? cfg->lock_timeout_ms : 5000;
    s->x_cache = !cfg->no_x_cache;
out:
    free(rules);
    free(statuses);
    return rc;
}

bool rp_purge_proxy_cache(rp_server *s, const char *method, const char *host, const char *path)
{
    if (!s || !s->cache || !method || !host || !path)
        return false;
    return cache_purge_key(s->cache, method, host, strlen(host), path, strlen(path));
}

size_t rp_purge_domain_cache(rp_server *s, const char *domain)
{
    char name[256]; /* entries carry the domain as configured, lowercased */
    size_t n;

    if (!s || !s->cache || !domain || (n = strlen(domain)) >= sizeof(name))
        return 0;
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] + 32 : domain[i]);
    return (size_t)cache_purge_domain(s->cache, name);
}

size_t rp_purge_all_proxy_cache(rp_server *s)
{
    return s && s->cache ? (size_t)cache_purge_all(s->cache) : 0;
}

void rp_proxy_cache_stats(rp_server *s, rp_cache_stats *st)
{
    struct cache_stats cs;

    if (!st)
        return;
    memset(st, 0, sizeof(*st));
    if (!s || !s->cache)
        return;
    cache_get_stats(s->cache, &cs);
    *st = (rp_cache_stats){cs.entries, cs.bytes,     cs.hits,  cs.misses,
                           cs.stores,  cs.evictions, cs.purges};
}

/* ---- the request path ------------------------------------------------------------------------
 *
 * A GET or HEAD to a domain that uses the cache is looked up after the request hooks ran:
 * a fresh entry is answered here (HIT) and never reaches the balancer's backend; a stale one
 * that must be revalidated goes upstream with our own conditionals (a 304 refreshes it:
 * REVALIDATED; a failure within stale-if-error serves it: STALE); a miss goes upstream and
 * the response, once the response hooks had their say, is stored while it streams (MISS).
 * Unsafe methods invalidate the URL's entries when they succeed.
 */

#define PC_FIELDS_MAX 256

/* A request waiting for another request's fill of the same URL (request collapsing). The
 * filler's thread wakes it by posting a CQE to its worker's ring (IORING_OP_MSG_RING); if the
 * exchange ends first, the record is orphaned and freed when that CQE arrives. */
struct pc_wait {
    struct wake wk; /* first: the filler's worker posts it to ours (OP_WAKE) */
    struct cache_waiter w;
    struct conn *c;
    bool orphan;
} __attribute__((aligned(1 << OP_BITS)));

/* What one exchange keeps for the cache while its request is upstream. */
struct pc_state {
    struct cache_req_meta rq;   /* parsed client request; rq.fields points at `fields` */
    struct cache_field *fields; /* copies of the client's end-to-end fields */
    uint32_t n_fields;
    char *host, *path; /* key parts: host without a default port, path+query */
    uint32_t host_len, path_len;
    const struct cache_rule *rule;
    const struct cache_entry *stale; /* the entry being revalidated, or NULL */
    struct cache_decision dec;       /* for `stale` */
    struct cache_builder *b;         /* the response being stored */
    int64_t request_ms;
    bool invalidate; /* an unsafe method: drop the URL's entries after a success */
    bool head;       /* a HEAD request */
    struct cache *cache;
    struct cache_fill *fill;   /* this request fills the URL for others waiting on it */
    struct pc_wait *wait;      /* this request waits for another's fill */
    uint64_t wait_deadline_ms; /* worker clock: then it goes to the origin itself */
};

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The request's end-to-end fields as the cache module sees them; returns how many. */
static uint32_t to_fields(const struct h1_header *h, uint32_t n, struct cache_field *out)
{
    uint32_t k = 0;

    for (uint32_t i = 0; i < n && k < PC_FIELDS_MAX; i++)
        if (!h[i].hop)
            out[k++] = (struct cache_field){h[i].name, h[i].value, h[i].name_len, h[i].value_len};
    return k;
}

/* Host without a default port (":80" in the clear, ":443" over TLS): one key for both. */
static uint32_t key_host_len(const char *host, uint32_t n, bool tls)
{
    const char *port = tls ? ":443" : ":80";
    size_t pl = strlen(port);

    if (n > pl && !memcmp(host + n - pl, port, pl) && host[0] != '[')
        return n - (uint32_t)pl;
    if (n > pl && host[0] == '[' && !memcmp(host + n - pl, port, pl) && host[n - pl - 1] == ']')
        return n - (uint32_t)pl;
    return n;
}

/* Stops waiting for a fill: the record is freed now, or when its wake-up CQE arrives. */
static void stop_waiting(struct pc_state *p)
{
    struct pc_wait *pw = p->wait;

    p->wait = NULL;
    p->wait_deadline_ms = 0;
    if (cache_fill_cancel_wait(p->cache, &pw->w))
        free(pw);
    else
        pw->orphan = true; /* the filler already called back: the CQE is on its way */
}

static void end_fill(struct pc_state *p, enum cache_fill_result res)
{
    if (p->fill) {
        cache_fill_end(p->cache, p->fill, res); /* wakes the waiters (wake_waiter) */
        p->fill = NULL;
    }
}

void pc_state_free(struct pc_state *p)
{
    if (!p)
        return;
    if (p->wait)
        stop_waiting(p);
    end_fill(p, CACHE_FILL_ABANDONED);
    cache_entry_abort(p->b);
    cache_entry_unref(p->stale);
    free(p->fields);
    free(p);
}

void pc_free(struct exchange *ex)
{
    pc_state_free(ex->pc);
    ex->pc = NULL;
}

/* Keeps what storing needs once the head is gone: the key and the request's fields. */
static struct pc_state *pc_new(const struct cache_field *f, uint32_t n, const char *host,
                               uint32_t hl, const char *path, uint32_t pl)
{
    size_t bytes = (size_t)hl + pl;
    struct pc_state *p;
    char *w;

    for (uint32_t i = 0; i < n; i++)
        bytes += f[i].name_len + f[i].value_len;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->fields = malloc(n * sizeof(*p->fields) + bytes + 1);
    if (!p->fields) {
        free(p);
        return NULL;
    }
    w = (char *)(p->fields + n);
    for (uint32_t i = 0; i < n; i++) {
        p->fields[i] = (struct cache_field){w, w + f[i].name_len, f[i].name_len, f[i].value_len};
        memcpy(w, f[i].name, f[i].name_len);
        w += f[i].name_len;
        memcpy(w, f[i].value, f[i].value_len);
        w += f[i].value_len;
    }
    p->n_fields = n;
    p->host = w;
    memcpy(w, host, hl);
    p->host_len = hl;
    p->path = w + hl;
    memcpy(p->path, path, pl);
    p->path_len = pl;
    return p;
}

/* ---- answering from an entry ------------------------------------------------------------ */

static void put_field(struct buf *b, bool *ok, const char *n, size_t nl, const char *v, size_t vl)
{
    buf_put(b, ok, n, nl);
    buf_put(b, ok, ": ", 2);
    buf_put(b, ok, v, vl);
    buf_put(b, ok, "\r\n", 2);
}

static bool name_is(const struct cache_field *f, const char *lower)
{
    return h1_span_ieq(f->name, f->name_len, lower);
}

/* Fields a 304 carries (RFC 9110 §15.4.5). */
static bool in_304(const struct cache_field *f)
{
    return name_is(f, "etag") || name_is(f, "cache-control") || name_is(f, "expires") ||
           name_is(f, "date") || name_is(f, "vary") || name_is(f, "content-location") ||
           name_is(f, "last-modified");
}

enum body_form { BODY_AS_STORED, BODY_GZIP_COPY, BODY_IDENTITY_COPY };

/* Writes the answer for entry e: its head (our Content-Length, Age, X-Cache, and the
 * encoding fields of the copy served) and, unless head_only or not_modified, its body. */
static void pc_answer(struct conn *c, const struct cache_entry *e, int64_t age_ms,
                      enum body_form form, const char *xcache, bool head_only, bool not_modified,
                      bool close)
{
    struct buf *b = conn_head_buf(c);
    const char *body = e->body->data;
    size_t blen = e->body->len, clen;
    bool ok = true, has_vary = false;
    char line[96];
    uint16_t status = not_modified ? 304 : e->status;

    if (form != BODY_AS_STORED)
        body = cache_entry_copy(e, &blen);
    metrics_request(c->w, c->ex->t, status);
    metrics_cache(c->w, xcache[0] == 'S' ? CK_STALE : xcache[0] == 'R' ? CK_REVALIDATED : CK_HIT);
    alog_status(c->ex, status);
    alog_cache(c->ex, xcache);
    snprintf(line, sizeof(line), "HTTP/1.1 %u %s\r\n", status, h1_reason(status));
    buf_put(b, &ok, line, strlen(line));
    for (uint32_t i = 0; i < e->n_fields; i++) {
        const struct cache_field *f = &e->fields[i];
        if (name_is(f, "content-length") || name_is(f, "age") || name_is(f, "x-cache"))
            continue;
        if (not_modified && !in_304(f))
            continue;
        if (form == BODY_IDENTITY_COPY && name_is(f, "content-encoding"))
            continue;
        if (form != BODY_AS_STORED && name_is(f, "etag")) { /* a transformed body: weak */
            char weak[256];
            int n = cache_etag_weaken(f->value, f->value_len, weak, sizeof(weak));
            if (n > 0)
                put_field(b, &ok, f->name, f->name_len, weak, (size_t)n);
            continue;
        }
        if (form == BODY_GZIP_COPY && name_is(f, "vary")) {
            has_vary = true;
            buf_put(b, &ok, f->name, f->name_len);
            buf_put(b, &ok, ": ", 2);
            buf_put(b, &ok, f->value, f->value_len);
            buf_put(b, &ok, ", Accept-Encoding\r\n", 19);
            continue;
        }
        put_field(b, &ok, f->name, f->name_len, f->value, f->value_len);
    }
    if (form == BODY_GZIP_COPY) {
        buf_put(b, &ok, "Content-Encoding: gzip\r\n", 24);
        if (!has_vary)
            buf_put(b, &ok, "Vary: Accept-Encoding\r\n", 23);
    }
    clen = blen;
    if (!not_modified && e->status != 204) {
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n", clen);
        buf_put(b, &ok, line, strlen(line));
    }
    snprintf(line, sizeof(line), "Age: %lld\r\n", (long long)(age_ms / 1000));
    buf_put(b, &ok, line, strlen(line));
    if (c->w->snap->x_cache) {
        snprintf(line, sizeof(line), "X-Cache: %s\r\n", xcache);
        buf_put(b, &ok, line, strlen(line));
    }
    if (close)
        buf_put(b, &ok, "Connection: close\r\n", 19);
    buf_put(b, &ok, "\r\n", 2);
    if (close)
        c->close_after = true;
    conn_head_done(c, ok);
    if (ok && !c->sk.dead && !head_only && !not_modified && blen && e->status != 204) {
        alog_body(c->ex, blen);
        conn_queue_bytes(c, body, (uint32_t)blen);
    }
    conn_flush_out(c);
}

/* Serves entry e to the client of the current request (whose exchange the caller ends).
 * Returns false when e cannot be served to this client (an origin-gzipped body whose
 * identity copy is not ready, for a client that refuses gzip). */
static bool pc_serve(struct conn *c, const struct cache_req_meta *rq, const struct cache_entry *e,
                     int64_t age_ms, const char *xcache, bool head, bool close)
{
    enum body_form form = BODY_AS_STORED;
    size_t n;
    bool nm;

    if (e->gzip_body && !rq->accepts_gzip) {
        if (!cache_entry_copy(e, &n))
            return false;
        form = BODY_IDENTITY_COPY;
    } else if (!e->gzip_body && rq->accepts_gzip && cache_entry_copy(e, &n)) {
        form = BODY_GZIP_COPY;
    }
    nm = e->status == 200 && (rq->has_inm || rq->has_ims) &&
         cache_not_modified(rq, e->etag, e->etag_len, e->has_lm, e->lm_s);
    pc_answer(c, e, age_ms, form, xcache, head, nm, close);
    return true;
}

static void answer_504(struct conn *c, bool close)
{
    struct rp_response a;

    resp_init(&a, 504);
    rp_response_printf(&a, "504 Gateway Timeout: not in the cache (only-if-cached)\n");
    conn_send_answer(c, &a, false, close);
    resp_fini(&a);
}

/* ---- before the request goes upstream --------------------------------------------------- */

/* A GET or HEAD as the cache looked it up. */
struct pc_lookup {
    uint32_t bit, hl, n; /* CACHE_M_GET or _HEAD; the key's host length; fields used */
    const struct cache_rule *rule;
    struct cache_req_meta rq;
    const struct cache_entry *e; /* referenced, or NULL: a miss */
    struct cache_decision d;
    struct cache_field fields[PC_FIELDS_MAX];
};

static bool unsafe(uint8_t m)
{
    return m == H1_M_POST || m == H1_M_PUT || m == H1_M_DELETE || m == H1_M_PATCH;
}

/* An unsafe method: the URL's entries go once it succeeds. */
static enum pc_result invalidating(struct exchange *ex, struct cache *cache,
                                   const struct h1_request *r, uint32_t hl)
{
    if (!(ex->pc = pc_new(NULL, 0, r->host, hl, r->path, r->path_len)))
        return PC_BYPASS;
    ex->pc->invalidate = true;
    ex->pc->cache = cache;
    alog_cache(ex, "BYPASS"); /* not answered from the cache, nor stored */
    return PC_FORWARD;
}

/* Looks a GET or HEAD up. Returns false when the request does not use the cache (another
 * method, or a rule leaves its method out). */
static bool lookup(struct cache *cache, const struct h1_request *r, uint32_t hl,
                   struct pc_lookup *lk)
{
    if (r->method_id != H1_M_GET && r->method_id != H1_M_HEAD)
        return false;
    lk->bit = r->method_id == H1_M_GET ? CACHE_M_GET : CACHE_M_HEAD;
    lk->hl = hl;
    lk->rule = cache_rule_match(cache_config_of(cache), r->path, r->path_len);
    if (!cache_rule_allows(lk->rule, lk->bit))
        return false;
    lk->n = to_fields(r->headers, r->n_headers, lk->fields);
    cache_req_meta_parse(&lk->rq, lk->bit, lk->fields, lk->n);
    struct cache_req req = {lk->bit, r->host, hl, r->path, r->path_len, &lk->rq};
    lk->e = cache_lookup(cache, &req, wall_ms(), &lk->d);
    return true;
}

/* Whether a 304 for entry e could be answered to this client: not for an origin-gzipped body
 * whose identity copy is not there yet, to a client that refuses gzip. */
static bool can_revalidate(const struct cache_entry *e, const struct cache_req_meta *rq)
{
    return !e->gzip_body || rq->accepts_gzip || cache_entry_copy(e, &(size_t){0});
}

/* The cache's state for a request that goes upstream: its key and fields, and lk's entry to
 * revalidate (lk's reference moves here; an entry a 304 could not refresh for this client is
 * dropped: the whole response is asked for). NULL when out of memory. */
static struct pc_state *state_for(struct cache *cache, const struct h1_request *r,
                                  struct pc_lookup *lk)
{
    const struct cache_entry *e = lk->e;
    struct pc_state *p;

    lk->e = NULL;
    if (e && !can_revalidate(e, &lk->rq)) {
        cache_entry_unref(e);
        e = NULL;
    }
    if (!(p = pc_new(lk->fields, lk->n, r->host, lk->hl, r->path, r->path_len))) {
        cache_entry_unref(e);
        return NULL;
    }
    p->rq = lk->rq;
    p->rq.fields = p->fields;
    p->rule = lk->rule;
    p->head = lk->bit == CACHE_M_HEAD;
    p->request_ms = wall_ms();
    p->stale = e;
    p->dec = lk->d;
    p->cache = cache;
    return p;
}

/* stale-while-revalidate: one request refreshes the entry while everyone is served the stale
 * one. It claims the URL's fill (nobody else is refreshing it) and goes out without a client
 * (refresh.c), conditionally, like a revalidation; lk's entry moves to it. A draining worker
 * starts none, and neither does only-if-cached (the client asked for no origin contact). */
static void refresh_in_background(struct conn *c, const struct h1_request *r, struct pc_lookup *lk)
{
    struct cache *cache = c->w->s->cache;
    struct cache_fill *fill = NULL;
    struct pc_state *p;

    if (c->w->draining || (lk->rq.cc.flags & CACHE_CC_ONLY_IF_CACHED) ||
        cache_fill_begin(cache, CACHE_M_GET, r->host, lk->hl, r->path, r->path_len, NULL, &fill) !=
            CACHE_FILLER)
        return; /* already being refreshed (or filled) */
    if (!(p = state_for(cache, r, lk))) {
        cache_fill_end(cache, fill, CACHE_FILL_ABANDONED);
        return;
    }
    p->fill = fill;
    refresh_start(c->w, r, &c->peer, c->tls != NULL, p);
}

static enum pc_result collapse(struct conn *c, struct pc_state *p, uint32_t read_timeout_ms);

/* Answers from the entry lk found, if it may: a hit (or stale within stale-while-revalidate,
 * which also starts the background refresh). */
static bool serve_hit(struct conn *c, const struct h1_request *r, struct pc_lookup *lk, bool close)
{
    if (!lk->e || lk->d.serve == CACHE_MUST_REVALIDATE ||
        !pc_serve(c, &lk->rq, lk->e, lk->d.age_ms, lk->d.stale ? "STALE" : "HIT",
                  lk->bit == CACHE_M_HEAD, close))
        return false;
    if (lk->d.serve == CACHE_STALE_SWR && r->body == H1_BODY_NONE && lk->bit == CACHE_M_GET)
        refresh_in_background(c, r, lk);
    return true;
}

enum pc_result pc_request(struct conn *c, const struct h1_request *r)
{
    struct exchange *ex = c->ex;
    struct cache *cache = c->w->s->cache;
    struct pc_lookup lk;
    uint32_t hl;
    bool close = !r->keep_alive || c->w->draining;

    if (!r->host)
        return PC_BYPASS;
    hl = key_host_len(r->host, r->host_len, c->tls != NULL);
    if (unsafe(r->method_id))
        return invalidating(ex, cache, r, hl);
    if (!lookup(cache, r, hl, &lk))
        return PC_BYPASS;
    if (serve_hit(c, r, &lk, close)) {
        cache_entry_unref(lk.e); /* (NULL when a refresh took it) */
        return PC_SERVED;
    }
    if (lk.rq.cc.flags & CACHE_CC_ONLY_IF_CACHED) {
        cache_entry_unref(lk.e);
        answer_504(c, close);
        return PC_SERVED;
    }
    if (!(ex->pc = state_for(cache, r, &lk)))
        return PC_BYPASS;
    if (lk.bit == CACHE_M_GET && r->body == H1_BODY_NONE)
        return collapse(c, ex->pc, ex->t->read_timeout_ms);
    return PC_FORWARD;
}

/* ---- request collapsing ------------------------------------------------------------------ */

/* The filler's thread (inside cache_fill_end): posts the wake-up to the waiter's worker. */
static void pc_on_wake(struct worker *w, struct wake *k);

static void wake_waiter(void *arg, unsigned worker, int result)
{
    struct pc_wait *pw = arg;
    struct worker *self = worker_self, *to;
    struct io_uring_sqe *sqe;

    if (!self || worker >= (unsigned)self->s->nworkers)
        return; /* not a worker thread: the waiter's own deadline sends it on */
    to = &self->s->workers[worker];
    sqe = w_sqe(self);
    io_uring_prep_msg_ring(sqe, to->ring.ring_fd, (unsigned)result, ud_of(pw, OP_WAKE), 0);
    sqe->user_data = 0; /* our own completion of the message: nothing to do */
}

/* The first miss on a URL fills it; later ones wait (bounded) for that fill. */
static enum pc_result collapse(struct conn *c, struct pc_state *p, uint32_t read_timeout_ms)
{
    struct pc_wait *pw = calloc(1, sizeof(*pw));
    uint32_t lock_ms = c->w->snap->cache_lock_ms;
    struct cache_fill *fill = NULL;
    int rc;

    if (!pw)
        return PC_FORWARD;
    pw->wk.fn = pc_on_wake;
    pw->w.fn = wake_waiter;
    pw->w.arg = pw;
    pw->w.worker = (unsigned)c->w->id;
    pw->c = c;
    rc = cache_fill_begin(p->cache, CACHE_M_GET, p->host, p->host_len, p->path, p->path_len, &pw->w,
                          &fill);
    if (rc == CACHE_WAIT) {
        p->wait = pw;
        p->wait_deadline_ms =
            c->w->now_ms + (lock_ms < read_timeout_ms ? lock_ms : read_timeout_ms);
        return PC_WAIT;
    }
    free(pw);
    if (rc == CACHE_FILLER)
        p->fill = fill;
    return PC_FORWARD;
}

uint64_t pc_wait_deadline(const struct exchange *ex)
{
    return ex->pc && ex->pc->wait ? ex->pc->wait_deadline_ms : 0;
}

/* Serves the waiting request from the cache if the fill left a usable entry. */
static bool serve_after_wait(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct pc_state *p = ex->pc;
    uint32_t bit = p->head ? CACHE_M_HEAD : CACHE_M_GET;
    struct cache_req req = {bit, p->host, p->host_len, p->path, p->path_len, &p->rq};
    struct cache_decision d;
    const struct cache_entry *e = cache_lookup(p->cache, &req, wall_ms(), &d);
    bool ok = e && d.serve != CACHE_MUST_REVALIDATE &&
              pc_serve(c, &p->rq, e, d.age_ms, d.stale ? "STALE" : "HIT", p->head,
                       ex->close_client || c->w->draining);

    cache_entry_unref(e);
    return ok;
}

/* The OP_WAKE completion: the fill ended; the request is served or sent upstream. */
static void pc_on_wake(struct worker *w, struct wake *k)
{
    struct pc_wait *pw = (struct pc_wait *)k;
    struct conn *c = pw->c;

    (void)w;
    if (pw->orphan) {
        free(pw);
        return;
    }
    c->ex->pc->wait = NULL;
    c->ex->pc->wait_deadline_ms = 0;
    free(pw);
    conn_cache_resume(c, serve_after_wait(c));
}

void pc_wait_expired(struct conn *c)
{
    stop_waiting(c->ex->pc);
    conn_cache_resume(c, false);
}

bool pc_skip_request_field(const struct pc_state *p, const struct h1_header *h)
{
    /* the client's conditionals are answered here, from what the cache holds */
    return p && !p->invalidate &&
           (h1_span_ieq(h->name, h->name_len, "if-none-match") ||
            h1_span_ieq(h->name, h->name_len, "if-modified-since"));
}

void pc_put_conditionals(const struct pc_state *p, struct buf *b, bool *ok)
{
    const struct cache_entry *e = p ? p->stale : NULL;
    uint32_t n;
    const char *lm;

    if (!e)
        return;
    if (e->etag)
        put_field(b, ok, "If-None-Match", 13, e->etag, e->etag_len);
    if ((lm = cache_entry_field(e, "last-modified", &n)))
        put_field(b, ok, "If-Modified-Since", 17, lm, n);
}

/* ---- when the response head arrives ------------------------------------------------------ */

bool pc_revalidated(struct pc_state *p, const struct h1_response *r,
                    const struct cache_entry **fresh)
{
    struct cache_field fields[PC_FIELDS_MAX];
    const struct cache_entry *e = NULL;
    uint32_t n;

    if (!p || p->invalidate || !p->stale || r->status != 304)
        return false;
    n = to_fields(r->headers, r->n_headers, fields);
    if (cache_refresh(p->cache, p->stale, fields, n, p->request_ms, wall_ms(), &e))
        return false; /* out of memory */
    end_fill(p, CACHE_FILL_DONE);
    if (fresh)
        *fresh = e;
    else
        cache_entry_unref(e);
    return true;
}

bool pc_stale_if_error(const struct pc_state *p, const struct h1_response *r)
{
    return p && !p->invalidate && p->stale && r->status >= 500 && p->dec.sie_ok;
}

bool pc_intercept_response(struct conn *c, const struct h1_response *r)
{
    struct exchange *ex = c->ex;
    struct pc_state *p = ex->pc;
    const struct cache_entry *fresh;
    bool close = ex->close_client || c->w->draining, served;

    if (!p)
        return false;
    if (p->invalidate) {
        if (r->status < 400)
            cache_invalidate(p->cache, p->host, p->host_len, p->path, p->path_len);
        return false;
    }
    if (pc_revalidated(p, r, &fresh)) {
        /* (false: the 304 is relayed as it came) */
        served = pc_serve(c, &p->rq, fresh, 0, "REVALIDATED", p->head, close);
        cache_entry_unref(fresh);
        return served;
    }
    return pc_stale_if_error(p, r) &&
           pc_serve(c, &p->rq, p->stale, p->dec.age_ms, "STALE", p->head, close);
}

/* Serves the stale entry when the origin could not be reached (stale-if-error); returns
 * whether it did. */
bool pc_serve_stale_on_error(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct pc_state *p = ex->pc;

    return p && p->stale && !p->invalidate && p->dec.sie_ok &&
           pc_serve(c, &p->rq, p->stale, p->dec.age_ms, "STALE", p->head,
                    ex->close_client || c->w->draining);
}

void pc_store_begin(struct conn *c, const struct h1_response *r, const struct rp_hook_ctx *hk,
                    struct buf *head, bool *ok)
{
    struct exchange *ex = c->ex;

    if (!ex->pc || ex->pc->invalidate)
        return;
    metrics_cache(c->w, CK_MISS);
    alog_cache(ex, "MISS");
    if (c->w->snap->x_cache)
        buf_put(head, ok, "X-Cache: MISS\r\n", 15);
    pc_store_start(ex->pc, ex->t->label, r, hk);
}

/* What the cache is told about response r beside the fields: its rule and a hook's say. */
static struct cache_admit admit_of(const struct pc_state *p, const struct rp_hook_ctx *hk)
{
    struct cache_admit ad = {.rule = p->rule};

    if (hk) {
        ad.hook = hk->cache_hook;
        ad.hook_ttl_ms = hk->cache_ttl_ms;
    }
    return ad;
}

void pc_store_start(struct pc_state *p, const char *domain, const struct h1_response *r,
                    const struct rp_hook_ctx *hk)
{
    struct cache_field fields[PC_FIELDS_MAX];
    struct cache_resp_meta rs;
    struct cache_verdict v;
    struct cache_admit ad;
    uint32_t n;
    int64_t now = wall_ms();

    if (!p || p->invalidate || p->head || r->status == 206)
        return;
    n = to_fields(r->headers, r->n_headers, fields);
    cache_resp_meta_parse(&rs, r->status, fields, n);
    ad = admit_of(p, hk);
    if (cache_storable(cache_config_of(p->cache), &p->rq, &rs, &ad, now, &v) != CACHE_STORE_OK)
        return;
    struct cache_entry_params ep = {
        .method_bit = CACHE_M_GET,
        .host = p->host,
        .host_len = p->host_len,
        .path = p->path,
        .path_len = p->path_len,
        .domain = domain,
        .status = r->status,
        .resp_fields = fields,
        .n_resp_fields = n,
        .req_fields = p->fields,
        .n_req_fields = p->n_fields,
        .meta = &rs,
        .verdict = &v,
        .request_ms = p->request_ms,
        .response_ms = now,
        .max_hits = hk ? hk->cache_max_hits : 0,
        .compress = hk ? hk->cache_compress : 0,
        .compress_min_len = hk ? hk->cache_min_len : 0,
        .vary_skip_accept_encoding = true,
    };
    p->b = cache_entry_new(p->cache, &ep);
}

bool pc_storing(const struct pc_state *p)
{
    return p && p->b;
}

void pc_store_body(struct pc_state *p, const char *data, size_t n)
{
    if (p && p->b && n && cache_entry_append(p->b, data, n)) {
        cache_entry_abort(p->b); /* too big, or out of memory: the client still gets it all */
        p->b = NULL;
    }
}

void pc_store_end(struct pc_state *p)
{
    if (p && p->b) {
        int rc = cache_insert(p->cache, p->b, NULL);
        p->b = NULL;
        end_fill(p, rc ? CACHE_FILL_ABANDONED : CACHE_FILL_DONE);
    }
}

/* ---- response hooks' cache controls ---------------------------------------------------------- */

void rp_cache_this(rp_proxy_response *pr, uint64_t ttl_ms, uint32_t max_hits,
                   const rp_cache_opts *opts)
{
    struct rp_hook_ctx *ctx = pr ? pr->ctx_ : NULL;

    if (!ctx || ctx->cache_hook < 0) /* rp_dont_cache wins, whatever the order */
        return;
    ctx->cache_hook = 1;
    ctx->cache_ttl_ms = ttl_ms;
    ctx->cache_max_hits = max_hits;
    if (opts) {
        ctx->cache_compress = (int8_t)(opts->pre_compress > 0   ? 1
                                       : opts->pre_compress < 0 ? -1
                                                                : 0);
        ctx->cache_min_len = opts->compress_min_len;
    }
}

void rp_dont_cache(rp_proxy_response *pr)
{
    if (pr && pr->ctx_)
        pr->ctx_->cache_hook = -1;
}
