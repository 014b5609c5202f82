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
static const char *const lat_le[LAT_BUCKETS] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                                "0.1",   "0.25",   "0.5",   "1",    "2.5",   "5"};
static const char *const fail_name[FAIL_KINDS] = {"refused",   "timeout", "reset", "tls",
                                                  "malformed", "5xx",     "other"};
static const char *const cache_name[CK_KINDS] = {"hit", "stale", "revalidated", "miss"};

/* ---- counting (worker thread, its own counters) ------------------------------------------ */

void metrics_request(struct worker *w, const struct target *t, int status)
{
    uint32_t row = t ? t->index : w->s->rt.n_targets;
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
    ctr_add(&w->m->retries[t ? t->index : w->s->rt.n_targets], 1);
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
    const struct route_table *rt = &w->s->rt;
    size_t nt = rt->n_targets + 1, nb = rt->n_backends ? rt->n_backends : 1;
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

void metrics_free(struct rp_server *s)
{
    for (int i = 0; i < s->nworkers; i++) {
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

/* Sums counter k of every worker: k(m) gives its address in one worker's set. */
#define SUM(s, expr)                                                                               \
    ({                                                                                             \
        uint64_t sum_ = 0;                                                                         \
        for (int wi_ = 0; wi_ < (s)->nworkers; wi_++) {                                            \
            const struct wmetrics *m = (s)->workers[wi_].m;                                        \
            if (m)                                                                                 \
                sum_ += ctr_get(&(expr));                                                          \
        }                                                                                          \
        sum_;                                                                                      \
    })

static void family(rp_response *r, const char *name, const char *type, const char *help)
{
    rp_response_printf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the text format wants it: backslash, double quote and newline escaped. */
static void put_label(rp_response *r, const char *v)
{
    for (const char *p = v; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (esc)
            rp_response_write(r, esc, 2);
        else
            rp_response_write(r, p, 1);
    }
}

/* name{domain="..",backend=".."<extra>} value */
static void sample(rp_response *r, const char *name, const struct target *t,
                   const struct backend *be, const char *extra, uint64_t v)
{
    rp_response_printf(r, "%s{domain=\"", name);
    put_label(r, t ? t->label : "");
    if (be) {
        rp_response_write(r, "\",backend=\"", 11);
        put_label(r, be->addr);
    }
    rp_response_printf(r, "\"%s} %llu\n", extra ? extra : "", (unsigned long long)v);
}

static void put_requests(rp_response *r, struct rp_server *s)
{
    const struct route_table *rt = &s->rt;
    static const char *const cls[5] = {",code=\"1xx\"", ",code=\"2xx\"", ",code=\"3xx\"",
                                       ",code=\"4xx\"", ",code=\"5xx\""};

    family(r, "ringproxy_requests_total", "counter",
           "Requests answered, by domain (\"\": not routed) and status class.");
    for (uint32_t i = 0; i <= route_count(rt); i++) { /* the last: requests not routed */
        const struct target *t = i < route_count(rt) ? route_target(rt, i) : NULL;
        uint32_t row = t ? t->index : rt->n_targets;
        for (uint32_t c = 0; c < 5; c++)
            sample(r, "ringproxy_requests_total", t, NULL, cls[c], SUM(s, m->req[row * 5 + c]));
    }
    family(r, "ringproxy_upstream_retries_total", "counter",
           "Requests sent again: to another backend, or on a fresh connection.");
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        sample(r, "ringproxy_upstream_retries_total", t, NULL, NULL, SUM(s, m->retries[t->index]));
    }
}

static void put_backends(rp_response *r, struct rp_server *s)
{
    const struct route_table *rt = &s->rt;
    char extra[64];

    family(r, "ringproxy_upstream_requests_total", "counter", "Attempts sent to a backend.");
    for (uint32_t i = 0; i < route_count(rt); i++)
        for (uint32_t j = 0; j < route_target(rt, i)->n_backends; j++) {
            const struct backend *be = route_target(rt, i)->backends[j];
            sample(r, "ringproxy_upstream_requests_total", route_target(rt, i), be, NULL,
                   atomic_load_explicit(&be->requests, memory_order_relaxed));
        }
    family(r, "ringproxy_upstream_failures_total", "counter",
           "Failed attempts at a backend, by reason (5xx: a server error it answered).");
    for (uint32_t i = 0; i < route_count(rt); i++)
        for (uint32_t j = 0; j < route_target(rt, i)->n_backends; j++) {
            const struct backend *be = route_target(rt, i)->backends[j];
            for (int k = 0; k < FAIL_KINDS; k++) {
                snprintf(extra, sizeof(extra), ",reason=\"%s\"", fail_name[k]);
                sample(r, "ringproxy_upstream_failures_total", route_target(rt, i), be, extra,
                       SUM(s, m->fail[be->index * FAIL_KINDS + k]));
            }
        }
    family(r, "ringproxy_upstream_response_seconds", "histogram",
           "Time from an attempt's start to its response head, per backend.");
    for (uint32_t i = 0; i < route_count(rt); i++)
        for (uint32_t j = 0; j < route_target(rt, i)->n_backends; j++) {
            const struct target *t = route_target(rt, i);
            const struct backend *be = t->backends[j];
            uint64_t cum = 0, sum;
            for (int b = 0; b <= LAT_BUCKETS; b++) {
                cum += SUM(s, m->lat[be->index * (LAT_BUCKETS + 1) + b]);
                snprintf(extra, sizeof(extra), ",le=\"%s\"", b < LAT_BUCKETS ? lat_le[b] : "+Inf");
                sample(r, "ringproxy_upstream_response_seconds_bucket", t, be, extra, cum);
            }
            sum = SUM(s, m->lat_sum[be->index]);
            rp_response_printf(r, "ringproxy_upstream_response_seconds_sum{domain=\"");
            put_label(r, t->label);
            rp_response_write(r, "\",backend=\"", 11);
            put_label(r, be->addr);
            rp_response_printf(r, "\"} %llu.%09llu\n", (unsigned long long)(sum / 1000000000u),
                               (unsigned long long)(sum % 1000000000u));
            sample(r, "ringproxy_upstream_response_seconds_count", t, be, NULL, cum);
        }
    family(r, "ringproxy_backend_up", "gauge",
           "1 while a backend takes traffic, 0 while health checks or failures hold it out.");
    for (uint32_t i = 0; i < route_count(rt); i++)
        for (uint32_t j = 0; j < route_target(rt, i)->n_backends; j++) {
            const struct backend *be = route_target(rt, i)->backends[j];
            sample(r, "ringproxy_backend_up", route_target(rt, i), be, NULL,
                   atomic_load_explicit(&be->healthy, memory_order_relaxed) ? 1 : 0);
        }
    family(r, "ringproxy_backend_in_flight", "gauge", "Attempts at a backend in progress.");
    for (uint32_t i = 0; i < route_count(rt); i++)
        for (uint32_t j = 0; j < route_target(rt, i)->n_backends; j++) {
            const struct backend *be = route_target(rt, i)->backends[j];
            sample(r, "ringproxy_backend_in_flight", route_target(rt, i), be, NULL,
                   atomic_load_explicit(&be->inflight, memory_order_relaxed));
        }
}

static void put_one(rp_response *r, const char *name, const char *type, const char *help,
                    uint64_t v)
{
    family(r, name, type, help);
    rp_response_printf(r, "%s %llu\n", name, (unsigned long long)v);
}

static void put_server(rp_response *r, struct rp_server *s)
{
    uint64_t open = 0, inflight, accepted, tls_fail, tunnels, t_in, t_out;
    rp_cache_stats st;

    for (int i = 0; i < s->nworkers; i++)
        open += __atomic_load_n(&s->workers[i].nconns, __ATOMIC_RELAXED);
    inflight = SUM(s, m->inflight);
    accepted = tls_fail = tunnels = t_in = t_out = 0;
    for (int i = 0; i < s->nworkers; i++) {
        const struct worker *w = &s->workers[i];
        accepted += ctr_get(&w->accepted);
        tls_fail += ctr_get(&w->tls_failures);
        tunnels += ctr_get(&w->tunnels);
        t_in += ctr_get(&w->tunnel_bytes_in);
        t_out += ctr_get(&w->tunnel_bytes_out);
    }
    family(r, "ringproxy_client_connections", "gauge",
           "Client connections open: with a request in progress (active) or between requests "
           "(idle).");
    rp_response_printf(r, "ringproxy_client_connections{state=\"active\"} %llu\n",
                       (unsigned long long)(inflight < open ? inflight : open));
    rp_response_printf(r, "ringproxy_client_connections{state=\"idle\"} %llu\n",
                       (unsigned long long)(inflight < open ? open - inflight : 0));
    put_one(r, "ringproxy_client_connections_accepted_total", "counter",
            "Client connections accepted.", accepted);
    put_one(r, "ringproxy_tls_failures_total", "counter",
            "Client TLS handshakes or records that failed.", tls_fail);
    put_one(r, "ringproxy_tunnels_total", "counter", "Upgrade (WebSocket) tunnels opened.",
            tunnels);
    family(r, "ringproxy_tunnel_bytes_total", "counter", "Bytes relayed through tunnels.");
    rp_response_printf(r, "ringproxy_tunnel_bytes_total{direction=\"to_backend\"} %llu\n",
                       (unsigned long long)t_in);
    rp_response_printf(r, "ringproxy_tunnel_bytes_total{direction=\"to_client\"} %llu\n",
                       (unsigned long long)t_out);
    family(r, "ringproxy_cache_requests_total", "counter",
           "Requests the cache took part in, by how they were answered.");
    for (int k = 0; k < CK_KINDS; k++)
        rp_response_printf(r, "ringproxy_cache_requests_total{result=\"%s\"} %llu\n", cache_name[k],
                           (unsigned long long)SUM(s, m->cache[k]));
    rp_proxy_cache_stats(s, &st);
    put_one(r, "ringproxy_cache_entries", "gauge", "Responses stored.", st.entries);
    put_one(r, "ringproxy_cache_bytes", "gauge", "Bytes the stored responses take.", st.bytes);
    put_one(r, "ringproxy_cache_stores_total", "counter", "Responses stored.", st.stores);
    put_one(r, "ringproxy_cache_evictions_total", "counter", "Entries evicted for room.",
            st.evictions);
    put_one(r, "ringproxy_cache_purges_total", "counter", "Entries purged.", st.purges);
    put_one(r, "ringproxy_reloads_total", "counter",
            "Configuration reloads (not built yet: always 0).", 0);
    put_one(r, "ringproxy_config_generation", "gauge", "The configuration in force (1: the first).",
            1);
    put_one(r, "ringproxy_workers", "gauge", "Worker threads.", (uint64_t)s->nworkers);
    family(r, "ringproxy_build_info", "gauge", "The running build (its version in a label).");
    rp_response_printf(r, "ringproxy_build_info{version=\"%s\"} 1\n", RP_VERSION);
}

static void admin_metrics(const rp_request *req, rp_response *resp, void *user)
{
    struct rp_server *s = user;

    (void)req;
    rp_headers_set(rp_response_headers(resp), "Content-Type",
                   "text/plain; version=0.0.4; charset=utf-8");
    rp_headers_set(rp_response_headers(resp), "Cache-Control", "no-store");
    put_requests(resp, s);
    put_backends(resp, s);
    put_server(resp, s);
}

int metrics_admin_setup(struct rp_server *s)
{
    return local_add(&s->admin, "GET", "/metrics", admin_metrics, s);
}
