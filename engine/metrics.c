/* metrics.c: per-worker counters and GET /metrics, the Prometheus text format (version 0.0.4)
 * of them: every name `ringproxy_*`, counters ending in `_total`, times in seconds, sizes in
 * bytes (Prometheus' naming rules). A scrape sums the workers' counters (metrics.h says how
 * they are read whole) and reads the shared per-backend state (health, in flight, attempts).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "metrics.h"

/* Upper bounds of the upstream response-time buckets, in nanoseconds (le="0.001" ...). */
static const uint64_t lat_le_ns[LAT_BUCKETS] = {
    1000000,   2500000,   5000000,   10000000,   25000000,   50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000,
};

/* ---- counting (worker thread, its own counters) ------------------------------------------ */

void metrics_request(struct worker *w, const struct target *t, int status)
{
    uint32_t row = t ? t->index : w->s->t_slots.cap;
    int cls = status / 100;

    if (cls < 1 || cls > 5)
        cls = 5;
    ctr_add(&w->m->req[row * 5 + (uint32_t)(cls - 1)], 1);
}

static enum fail_kind kind_of(int err, const char *what)
{
    if (err == -ECONNREFUSED)
        return FAIL_REFUSED;
    if (err == -ETIMEDOUT)
        return FAIL_TIMEOUT;
    if (err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED)
        return FAIL_RESET;
    if (err == -EBADMSG || err == -E2BIG)
        return FAIL_MALFORMED;
    if (what && !strncmp(what, "TLS", 3))
        return FAIL_TLS;
    return FAIL_OTHER;
}

void metrics_failure(struct worker *w, const struct backend *be, int err, const char *what)
{
    enum fail_kind k = err > 0 ? FAIL_5XX : kind_of(err, what);

    ctr_add(&w->m->fail[be->index * FAIL_KINDS + k], 1);
}

void metrics_response_time(struct worker *w, const struct backend *be, uint64_t ns)
{
    uint32_t b = 0;

    while (b < LAT_BUCKETS && ns > lat_le_ns[b])
        b++;
    ctr_add(&w->m->lat[be->index * (LAT_BUCKETS + 1) + b], 1);
    ctr_add(&w->m->lat_sum[be->index], ns);
}

void metrics_retry(struct worker *w, const struct target *t)
{
    ctr_add(&w->m->retries[t ? t->index : w->s->t_slots.cap], 1);
}

void metrics_cache(struct worker *w, enum cache_kind k)
{
    ctr_add(&w->m->cache[k], 1);
}

void metrics_inflight(struct worker *w, int delta)
{
    ctr_add(&w->m->inflight, (uint64_t)(int64_t)delta);
}

/* ---- the worker's counters: from its start to the end of the run ------------------------- */

static int metrics_init(struct worker *w)
{
    size_t nt = w->s->t_slots.cap + 1, nb = w->s->be_slots.cap ? w->s->be_slots.cap : 1;
    struct wmetrics *m = calloc(1, sizeof(*m));

    if (!m)
        return -ENOMEM;
    w->m = m;
    m->req = calloc(nt * 5, sizeof(uint64_t));
    m->retries = calloc(nt, sizeof(uint64_t));
    m->fail = calloc(nb * FAIL_KINDS, sizeof(uint64_t));
    m->lat = calloc(nb * (LAT_BUCKETS + 1), sizeof(uint64_t));
    m->lat_sum = calloc(nb, sizeof(uint64_t));
    return m->req && m->retries && m->fail && m->lat && m->lat_sum ? 0 : -ENOMEM;
}

/* A scrape on another worker may still read them: they go only with the server's run. */
const struct worker_module metrics_module = {
    .init = metrics_init,
    .name = "metrics",
};

/* A slot's counters start again from 0 for its next holder. Only the thread freeing the slot
 * writes them now (its last holder is gone from every worker). */
static void clear(uint64_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        __atomic_store_n(&c[i], 0, __ATOMIC_RELAXED);
}

void metrics_clear_target(struct rp_server *s, uint32_t i)
{
    for (int k = 0; s->workers && k < s->nthreads; k++) {
        struct wmetrics *m = s->workers[k].m;
        if (m) {
            clear(&m->req[(size_t)i * 5], 5);
            clear(&m->retries[i], 1);
        }
    }
}

void metrics_clear_backend(struct rp_server *s, uint32_t i)
{
    for (int k = 0; s->workers && k < s->nthreads; k++) {
        struct wmetrics *m = s->workers[k].m;
        if (m) {
            clear(&m->fail[(size_t)i * FAIL_KINDS], FAIL_KINDS);
            clear(&m->lat[(size_t)i * (LAT_BUCKETS + 1)], LAT_BUCKETS + 1);
            clear(&m->lat_sum[i], 1);
        }
    }
}

void metrics_free(struct rp_server *s)
{
    for (int i = 0; i < s->nthreads; i++) {
        struct wmetrics *m = s->workers[i].m;
        if (!m)
            continue;
        free(m->req);
        free(m->retries);
        free(m->fail);
        free(m->lat);
        free(m->lat_sum);
        free(m);
        s->workers[i].m = NULL;
    }
}

/* ---- the exposition ------------------------------------------------------------------------ */

/* Sums one counter over every worker: `expr` names it in a worker's set `m`. */
#define SUM(s, expr)                                                                               \
    ({                                                                                             \
        uint64_t sum_ = 0;                                                                         \
        for (int wi_ = 0; wi_ < (s)->nthreads; wi_++) {                                            \
            const struct wmetrics *m = (s)->workers[wi_].m;                                        \
            if (m)                                                                                 \
                sum_ += ctr_get(&(expr));                                                          \
        }                                                                                          \
        sum_;                                                                                      \
    })

/* The exposition is composed in one buffer and handed over once: a scrape of 100 domains of
 * 3 backends is about 800 KB, written on the worker that took the admin connection, so each
 * line costs a few copies and no formatting call (tools/scrapebench.py measures it). */
struct expo {
    struct buf b;
    bool ok;
    char lab[1100]; /* the current series' labels: domain="..",backend=".." */
    uint32_t lab_len;
};

static void put(struct expo *x, const char *p, size_t n)
{
    buf_put(&x->b, &x->ok, p, n);
}

static void put_str(struct expo *x, const char *s)
{
    put(x, s, strlen(s));
}

static void put_u64(struct expo *x, uint64_t v)
{
    char tmp[24], *p = u64_dec(tmp, v);

    put(x, p, (size_t)(tmp + sizeof(tmp) - p));
}

static void family(struct expo *x, const char *name, const char *type, const char *help)
{
    put_str(x, "# HELP ");
    put_str(x, name);
    put(x, " ", 1);
    put_str(x, help);
    put_str(x, "\n# TYPE ");
    put_str(x, name);
    put(x, " ", 1);
    put_str(x, type);
    put(x, "\n", 1);
}

/* Appends name="value" to the labels, the value escaped as the text format wants it
 * (backslash, double quote, newline); a value that does not fit is cut. */
static void add_label(struct expo *x, const char *name, const char *v)
{
    size_t cap = sizeof(x->lab) - 8;

    if (x->lab_len && x->lab_len < cap)
        x->lab[x->lab_len++] = ',';
    for (const char *p = name; *p && x->lab_len < cap; p++)
        x->lab[x->lab_len++] = *p;
    x->lab[x->lab_len++] = '=';
    x->lab[x->lab_len++] = '"';
    for (const char *p = v; *p && x->lab_len < cap; p++) {
        char c = *p == '\n' ? 'n' : *p;
        if (*p == '\\' || *p == '"' || *p == '\n')
            x->lab[x->lab_len++] = '\\';
        x->lab[x->lab_len++] = c;
    }
    x->lab[x->lab_len++] = '"';
}

static void set_labels(struct expo *x, const struct target *t, const struct backend *be)
{
    x->lab_len = 0;
    add_label(x, "domain", t ? t->label : "");
    if (be)
        add_label(x, "backend", be->addr);
}

/* name{labels<extra>} v */
static void sample(struct expo *x, const char *name, const char *extra, uint64_t v)
{
    put_str(x, name);
    put(x, "{", 1);
    put(x, x->lab, x->lab_len);
    if (extra)
        put_str(x, extra);
    put(x, "} ", 2);
    put_u64(x, v);
    put(x, "\n", 1);
}

/* name v, for a series without labels */
static void put_one(struct expo *x, const char *name, const char *type, const char *help,
                    uint64_t v)
{
    family(x, name, type, help);
    put_str(x, name);
    put(x, " ", 1);
    put_u64(x, v);
    put(x, "\n", 1);
}

/* The scrape runs on the admin listener's worker: its snapshot is the one it reports. */
static const struct route_table *scrape_table(void)
{
    return &worker_self->snap->rt;
}

static void put_requests(struct expo *x, struct rp_server *s)
{
    const struct route_table *rt = scrape_table();
    static const char *const cls[5] = {",code=\"1xx\"", ",code=\"2xx\"", ",code=\"3xx\"",
                                       ",code=\"4xx\"", ",code=\"5xx\""};

    family(x, "ringproxy_requests_total", "counter",
           "Requests answered, by domain (\"\": not routed) and status class.");
    for (uint32_t i = 0; i <= route_count(rt); i++) { /* the last: requests not routed */
        const struct target *t = i < route_count(rt) ? route_target(rt, i) : NULL;
        uint32_t row = t ? t->index : s->t_slots.cap;
        set_labels(x, t, NULL);
        for (uint32_t c = 0; c < 5; c++)
            sample(x, "ringproxy_requests_total", cls[c], SUM(s, m->req[row * 5 + c]));
    }
    family(x, "ringproxy_upstream_retries_total", "counter",
           "Requests sent again: to another backend, or on a fresh connection.");
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        set_labels(x, t, NULL);
        sample(x, "ringproxy_upstream_retries_total", NULL, SUM(s, m->retries[t->index]));
    }
}

/* One family over every (domain, backend) series; `each` writes one series' samples. */
static void per_backend(struct expo *x, struct rp_server *s, const char *name, const char *type,
                        const char *help,
                        void (*each)(struct expo *x, struct rp_server *s, const char *name,
                                     const struct backend *be))
{
    const struct route_table *rt = scrape_table();

    family(x, name, type, help);
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        for (uint32_t j = 0; j < t->n_backends; j++) {
            set_labels(x, t, t->backends[j]);
            each(x, s, name, t->backends[j]);
        }
    }
}

static void each_attempts(struct expo *x, struct rp_server *s, const char *name,
                          const struct backend *be)
{
    (void)s;
    sample(x, name, NULL, atomic_load_explicit(&be->requests, memory_order_relaxed));
}

static void each_failures(struct expo *x, struct rp_server *s, const char *name,
                          const struct backend *be)
{
    static const char *const reason[FAIL_KINDS] = {
        ",reason=\"refused\"",   ",reason=\"timeout\"", ",reason=\"reset\"", ",reason=\"tls\"",
        ",reason=\"malformed\"", ",reason=\"5xx\"",     ",reason=\"other\""};

    for (int k = 0; k < FAIL_KINDS; k++)
        sample(x, name, reason[k], SUM(s, m->fail[be->index * FAIL_KINDS + k]));
}

static void each_latency(struct expo *x, struct rp_server *s, const char *name,
                         const struct backend *be)
{
    static const char *const le[LAT_BUCKETS + 1] = {
        ",le=\"0.001\"", ",le=\"0.0025\"", ",le=\"0.005\"", ",le=\"0.01\"", ",le=\"0.025\"",
        ",le=\"0.05\"",  ",le=\"0.1\"",    ",le=\"0.25\"",  ",le=\"0.5\"",  ",le=\"1\"",
        ",le=\"2.5\"",   ",le=\"5\"",      ",le=\"+Inf\""};
    uint64_t cum = 0, sum = SUM(s, m->lat_sum[be->index]);
    char frac[16];

    (void)name;
    for (int b = 0; b <= LAT_BUCKETS; b++) {
        cum += SUM(s, m->lat[be->index * (LAT_BUCKETS + 1) + b]);
        sample(x, "ringproxy_upstream_response_seconds_bucket", le[b], cum);
    }
    put_str(x, "ringproxy_upstream_response_seconds_sum{");
    put(x, x->lab, x->lab_len);
    put(x, "} ", 2);
    put_u64(x, sum / 1000000000u);
    snprintf(frac, sizeof(frac), ".%09llu\n", (unsigned long long)(sum % 1000000000u));
    put_str(x, frac);
    sample(x, "ringproxy_upstream_response_seconds_count", NULL, cum);
}

static void each_up(struct expo *x, struct rp_server *s, const char *name, const struct backend *be)
{
    (void)s;
    sample(x, name, NULL, atomic_load_explicit(&be->healthy, memory_order_relaxed) ? 1 : 0);
}

static void each_in_flight(struct expo *x, struct rp_server *s, const char *name,
                           const struct backend *be)
{
    (void)s;
    sample(x, name, NULL, atomic_load_explicit(&be->inflight, memory_order_relaxed));
}

static void put_backends(struct expo *x, struct rp_server *s)
{
    per_backend(x, s, "ringproxy_upstream_requests_total", "counter", "Attempts sent to a backend.",
                each_attempts);
    per_backend(x, s, "ringproxy_upstream_failures_total", "counter",
                "Failed attempts at a backend, by reason (5xx: a server error it answered).",
                each_failures);
    per_backend(x, s, "ringproxy_upstream_response_seconds", "histogram",
                "Time from an attempt's start to its response head, per backend.", each_latency);
    per_backend(x, s, "ringproxy_backend_up", "gauge",
                "1 while a backend takes traffic, 0 while health checks or failures hold it out.",
                each_up);
    per_backend(x, s, "ringproxy_backend_in_flight", "gauge", "Attempts at a backend in progress.",
                each_in_flight);
}

static void put_server(struct expo *x, struct rp_server *s)
{
    uint64_t open = 0, inflight = SUM(s, m->inflight), accepted = 0, tls_fail = 0, tls_ok = 0,
             tunnels = 0;
    uint64_t t_in = 0, t_out = 0, pp[3] = {0, 0, 0}, h2[7] = {0};
    static const char *const h2_refused[5] = {"reason=\"calm\"", "reason=\"reset\"",
                                              "reason=\"headers\"", "reason=\"protocol\"",
                                              "reason=\"write_timeout\""};
    static const char *const result[CK_KINDS] = {",result=\"hit\"", ",result=\"stale\"",
                                                 ",result=\"revalidated\"", ",result=\"miss\""};
    rp_cache_stats st;

    for (int i = 0; i < s->nthreads; i++) { /* the admin listener's worker too */
        const struct worker *w = &s->workers[i];
        open += __atomic_load_n(&w->nconns, __ATOMIC_RELAXED);
        accepted += ctr_get(&w->accepted);
        tls_fail += ctr_get(&w->tls_failures);
        tls_ok += ctr_get(&w->tls_handshakes);
        tunnels += ctr_get(&w->tunnels);
        t_in += ctr_get(&w->tunnel_bytes_in);
        t_out += ctr_get(&w->tunnel_bytes_out);
        pp[0] += ctr_get(&w->pp_denied);
        pp[1] += ctr_get(&w->pp_malformed);
        pp[2] += ctr_get(&w->pp_timeouts);
        h2[0] += ctr_get(&w->h2_conns);
        h2[1] += ctr_get(&w->h2_streams);
        h2[2] += ctr_get(&w->h2_calm);
        h2[3] += ctr_get(&w->h2_resets);
        h2[4] += ctr_get(&w->h2_big_headers);
        h2[5] += ctr_get(&w->h2_protocol_errors);
        h2[6] += ctr_get(&w->h2_write_timeouts);
    }
    x->lab_len = 0;
    family(x, "ringproxy_client_connections", "gauge",
           "Client connections open: with a request in progress (active) or between requests "
           "(idle).");
    sample(x, "ringproxy_client_connections", "state=\"active\"",
           inflight < open ? inflight : open);
    sample(x, "ringproxy_client_connections", "state=\"idle\"",
           inflight < open ? open - inflight : 0);
    put_one(x, "ringproxy_client_connections_accepted_total", "counter",
            "Client connections accepted.", accepted);
    put_one(x, "ringproxy_tls_handshakes_total", "counter", "Client TLS handshakes completed.",
            tls_ok);
    put_one(x, "ringproxy_tls_failures_total", "counter",
            "Client TLS handshakes or records that failed.", tls_fail);
    put_one(x, "ringproxy_tunnels_total", "counter", "Upgrade (WebSocket) tunnels opened.",
            tunnels);
    put_one(x, "ringproxy_http2_connections_total", "counter",
            "Client connections that spoke HTTP/2 (ALPN h2, or h2c with prior knowledge).", h2[0]);
    put_one(x, "ringproxy_http2_streams_total", "counter", "HTTP/2 streams clients opened.", h2[1]);
    family(x, "ringproxy_http2_refused_total", "counter",
           "What HTTP/2 clients were refused: connections told GOAWAY ENHANCE_YOUR_CALM (calm: "
           "floods, rapid reset past the budget), streams reset by the client before their "
           "answer (reset), header lists past the limits (headers), protocol errors, streams "
           "whose client never took their answer (write_timeout).");
    for (int k = 0; k < 5; k++)
        sample(x, "ringproxy_http2_refused_total", h2_refused[k], h2[2 + k]);
    family(x, "ringproxy_proxy_protocol_rejected_total", "counter",
           "Connections a PROXY protocol listener closed: a peer outside proxy_protocol_from "
           "(denied), a malformed header, or none within header_timeout.");
    sample(x, "ringproxy_proxy_protocol_rejected_total", "reason=\"denied\"", pp[0]);
    sample(x, "ringproxy_proxy_protocol_rejected_total", "reason=\"malformed\"", pp[1]);
    sample(x, "ringproxy_proxy_protocol_rejected_total", "reason=\"timeout\"", pp[2]);
    family(x, "ringproxy_tunnel_bytes_total", "counter", "Bytes relayed through tunnels.");
    sample(x, "ringproxy_tunnel_bytes_total", "direction=\"to_backend\"", t_in);
    sample(x, "ringproxy_tunnel_bytes_total", "direction=\"to_client\"", t_out);
    family(x, "ringproxy_cache_requests_total", "counter",
           "Requests the cache took part in, by how they were answered.");
    for (int k = 0; k < CK_KINDS; k++)
        sample(x, "ringproxy_cache_requests_total", result[k] + 1, SUM(s, m->cache[k]));
    rp_proxy_cache_stats(s, &st);
    put_one(x, "ringproxy_cache_entries", "gauge", "Responses stored.", st.entries);
    put_one(x, "ringproxy_cache_bytes", "gauge", "Bytes the stored responses take.", st.bytes);
    put_one(x, "ringproxy_cache_stores_total", "counter", "Responses stored.", st.stores);
    put_one(x, "ringproxy_cache_evictions_total", "counter", "Entries evicted for room.",
            st.evictions);
    put_one(x, "ringproxy_cache_purges_total", "counter", "Entries purged.", st.purges);
    put_one(x, "ringproxy_access_log_lines_total", "counter", "Access log lines written.",
            SUM(s, m->alog_lines));
    put_one(x, "ringproxy_access_log_dropped_total", "counter",
            "Access log lines dropped: a worker's buffers for the file were full while a write "
            "was in flight, or the write that held them failed.",
            SUM(s, m->alog_dropped));
    put_one(x, "ringproxy_access_log_write_errors_total", "counter",
            "Access log writes that failed (disk full, I/O error).", SUM(s, m->alog_errors));
    put_one(x, "ringproxy_reloads_total", "counter", "Configuration reloads that took effect.",
            atomic_load(&s->reloads));
    put_one(x, "ringproxy_config_generation", "gauge", "The configuration in force (1: the first).",
            worker_self->snap->gen);
    put_one(x, "ringproxy_reload_failures_total", "counter",
            "Reloads refused (a file with an error, a listener or certificate that cannot be "
            "used): nothing changed.",
            atomic_load(&s->reload_failures));
    put_one(x, "ringproxy_config_last_reload_successful", "gauge",
            "0 while the last reload asked for was refused (the file on disk is not the one in "
            "force), else 1.",
            !atomic_load(&s->last_reload_failed));
    put_one(x, "ringproxy_config_last_reload_success_timestamp_seconds", "gauge",
            "When the configuration in force took effect (the start, or the last good reload), "
            "in Unix time.",
            (uint64_t)atomic_load(&s->last_reload_ok_s));
    put_one(x, "ringproxy_workers", "gauge", "Worker threads.", (uint64_t)s->nworkers);
    family(x, "ringproxy_build_info", "gauge", "The running build (its version in a label).");
    sample(x, "ringproxy_build_info", "version=\"" RP_VERSION "\"", 1);
}

static atomic_uint last_size = 64 * 1024; /* the last exposition's bytes */

static void admin_metrics(const rp_request *req, rp_response *resp, void *user)
{
    struct rp_server *s = user;
    struct expo x = {.ok = true};

    (void)req;
    rp_headers_set(rp_response_headers(resp), "Content-Type",
                   "text/plain; version=0.0.4; charset=utf-8");
    rp_headers_set(rp_response_headers(resp), "Cache-Control", "no-store");
    /* room for the last scrape's size at once: a scrape grows its buffer at most once */
    buf_reserve(&x.b, atomic_load_explicit(&last_size, memory_order_relaxed) + 4096);
    put_requests(&x, s);
    put_backends(&x, s);
    put_server(&x, s);
    atomic_store_explicit(&last_size, buf_used(&x.b), memory_order_relaxed);
    if (x.ok && !resp->body && !x.b.off && buf_used(&x.b) <= RESP_MAX_BODY) {
        resp->body = x.b.p; /* handed over, not copied */
        resp->body_len = x.b.len;
        resp->body_cap = x.b.cap;
        x.b = (struct buf){0};
    } else if (!x.ok || rp_response_write(resp, buf_data(&x.b), buf_used(&x.b))) {
        rp_response_set_status(resp, 500);
        rp_response_printf(resp, "out of memory\n");
    }
    buf_free(&x.b);
}

int metrics_admin_setup(struct rp_server *s)
{
    return local_add(&s->admin, "GET", "/metrics", admin_metrics, s);
}
