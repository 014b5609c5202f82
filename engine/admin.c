/* admin.c: the admin API, on its own listener (admin.listen), behind its token: purging the
 * cache and its stats, the backends and their runtime control (drain, enable, weight), and
 * /metrics (metrics.c). Answers are JSON, always valid whatever bytes a client sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "log.h"

/* ---- JSON ---------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */

    if (s[0] < 0xc2 || s[0] > 0xf4 || n < len)
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0; /* overlong */
    else if (s[0] == 0xed)
        hi = 0x9f; /* surrogates */
    else if (s[0] == 0xf0)
        lo = 0x90; /* overlong */
    else if (s[0] == 0xf4)
        hi = 0x8f; /* past U+10FFFF */
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Writes s as a JSON string body: quotes and control characters escaped, well-formed UTF-8
 * passed on, and each byte that is not part of it written as U+FFFD, so the answer is
 * always valid JSON (RFC 8259 section 8.1) whatever bytes a client put in a domain. */
static void json_str(rp_response *resp, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;

    rp_response_write(resp, "\"", 1);
    for (size_t i = 0, k; i < n; i += k) {
        unsigned char ch = u[i];
        k = 1;
        if (ch == '"' || ch == '\\')
            rp_response_printf(resp, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            rp_response_printf(resp, "\\u%04x", ch);
        else if (ch < 0x80)
            rp_response_write(resp, s + i, 1);
        else if ((k = utf8_seq(u + i, n - i)))
            rp_response_write(resp, s + i, k);
        else {
            rp_response_write(resp, "\xef\xbf\xbd", 3); /* U+FFFD for this one byte */
            k = 1;
        }
    }
    rp_response_write(resp, "\"", 1);
}

static void json_answer(rp_response *resp)
{
    rp_headers_set(rp_response_headers(resp), "Content-Type", "application/json");
    rp_headers_set(rp_response_headers(resp), "Cache-Control", "no-store");
}

/* The value of `name` in a query string, percent-decoded into out[0..cap); false if absent. */
static bool query_param(rp_str q, const char *name, char *out, size_t cap, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = q.p, *end = q.p + q.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
            *len = pct_decode(p + nl + 1, (size_t)(e - p) - nl - 1, out, cap, true);
            return true;
        }
        p = e + 1;
    }
    return false;
}

/* DELETE /cache/:domain -> {"domain":"...","purged":N} */
static void admin_purge_domain(const rp_request *req, rp_response *resp, void *user)
{
    rp_server *s = user;
    rp_str d;
    char name[256];

    json_answer(resp);
    if (!rp_request_param(req, "domain", &d) || d.len >= sizeof(name)) {
        rp_response_set_status(resp, 400);
        rp_response_printf(resp, "{\"error\":\"bad domain\"}\n");
        return;
    }
    memcpy(name, d.p, d.len);
    name[d.len] = 0;
    size_t n = rp_purge_domain_cache(s, name);
    rp_response_printf(resp, "{\"domain\":");
    json_str(resp, d.p, d.len);
    rp_response_printf(resp, ",\"purged\":%zu}\n", n);
}

/* DELETE /cache?method=GET&host=...&path=... -> {"purged":true|false}; DELETE /cache -> all */
static void admin_purge(const rp_request *req, rp_response *resp, void *user)
{
    rp_server *s = user;
    char method[16] = "GET", host[512], path[8192];
    size_t ml, hl, pl;
    bool has_host = query_param(req->query, "host", host, sizeof(host), &hl);
    bool has_path = query_param(req->query, "path", path, sizeof(path), &pl);

    json_answer(resp);
    if (!has_host && !has_path && !req->query.len) {
        rp_response_printf(resp, "{\"purged\":%zu}\n", rp_purge_all_proxy_cache(s));
        return;
    }
    query_param(req->query, "method", method, sizeof(method), &ml);
    if (!has_host || !has_path || path[0] != '/') {
        rp_response_set_status(resp, 400);
        rp_response_printf(resp, "{\"error\":\"host and path (starting with /) are required\"}\n");
        return;
    }
    rp_response_printf(resp, "{\"purged\":%s}\n",
                       rp_purge_proxy_cache(s, method, host, path) ? "true" : "false");
}

/* GET /cache/stats */
static void admin_stats(const rp_request *req, rp_response *resp, void *user)
{
    rp_cache_stats st;

    (void)req;
    rp_proxy_cache_stats(user, &st);
    json_answer(resp);
    rp_response_printf(
        resp,
        "{\"enabled\":%s,\"entries\":%llu,\"bytes\":%llu,\"hits\":%llu,\"misses\":%llu,"
        "\"stores\":%llu,\"evictions\":%llu,\"purges\":%llu}\n",
        ((rp_server *)user)->cache ? "true" : "false", (unsigned long long)st.entries,
        (unsigned long long)st.bytes, (unsigned long long)st.hits, (unsigned long long)st.misses,
        (unsigned long long)st.stores, (unsigned long long)st.evictions,
        (unsigned long long)st.purges);
}

/* ---- backends ------------------------------------------------------------------------------- */

/* The average response time least_latency keeps, in ms; -1 when it has no sample. */
static double latency_ms(const struct backend *be)
{
    uint64_t bits = atomic_load_explicit(&be->lat_ewma, memory_order_relaxed);
    double ns;

    if (!atomic_load_explicit(&be->lat_stamp, memory_order_relaxed))
        return -1;
    memcpy(&ns, &bits, sizeof(ns));
    return ns / 1e6;
}

static const char *state_of(const struct backend *be)
{
    if (atomic_load_explicit(&be->drained, memory_order_relaxed))
        return "drained";
    return atomic_load_explicit(&be->healthy, memory_order_relaxed) ? "up" : "down";
}

static void put_backend(rp_response *resp, const struct target *t, const struct backend *be)
{
    double lat = latency_ms(be);

    rp_response_printf(resp, "{\"domain\":");
    json_str(resp, t->label, strlen(t->label));
    rp_response_printf(resp, ",\"addr\":");
    json_str(resp, be->addr, strlen(be->addr));
    rp_response_printf(
        resp, ",\"weight\":%d,\"state\":\"%s\",\"in_flight\":%u,\"requests\":%lu,\"failures\":%lu",
        atomic_load_explicit(&be->weight, memory_order_relaxed), state_of(be),
        atomic_load_explicit(&be->inflight, memory_order_relaxed),
        atomic_load_explicit(&be->requests, memory_order_relaxed),
        atomic_load_explicit(&be->failures, memory_order_relaxed));
    if (lat < 0)
        rp_response_printf(resp, ",\"latency_ms\":null}");
    else
        rp_response_printf(resp, ",\"latency_ms\":%.3f}", lat);
}

/* GET /backends -> [{"domain":..,"addr":..,"weight":..,"state":"up"|"down"|"drained",
 * "in_flight":..,"requests":..,"failures":..,"latency_ms":..|null}, ...] */
static void admin_backends(const rp_request *req, rp_response *resp, void *user)
{
    const struct route_table *rt = &worker_self->snap->rt; /* the admin worker's */
    bool first = true;

    (void)req;
    (void)user;
    json_answer(resp);
    rp_response_write(resp, "[", 1);
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        for (uint32_t j = 0; j < t->n_backends; j++) {
            if (!first)
                rp_response_write(resp, ",", 1);
            first = false;
            put_backend(resp, t, t->backends[j]);
        }
    }
    rp_response_printf(resp, "]\n");
}

static void bad_request(rp_response *resp, int status, const char *why)
{
    rp_response_set_status(resp, status);
    rp_response_printf(resp, "{\"error\":\"%s\"}\n", why);
}

/* The backend `addr` of domain `domain`, both from the query; NULL (answered) if none. */
static struct backend *backend_of(const rp_request *req, rp_response *resp, rp_server *s,
                                  const struct target **tp)
{
    const struct route_table *rt = &worker_self->snap->rt;
    char domain[256], addr[512];

    (void)s;
    size_t dl, al;
    rp_str q = req->query;

    json_answer(resp);
    if (!query_param(q, "domain", domain, sizeof(domain), &dl) ||
        !query_param(q, "addr", addr, sizeof(addr), &al) || !dl || !al) {
        bad_request(resp, 400, "domain and addr are required");
        return NULL;
    }
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        if (strlen(t->label) != dl || strncasecmp(t->label, domain, dl))
            continue;
        for (uint32_t j = 0; j < t->n_backends; j++)
            if (strlen(t->backends[j]->addr) == al && !memcmp(t->backends[j]->addr, addr, al)) {
                *tp = t;
                return t->backends[j];
            }
    }
    bad_request(resp, 404, "no such backend in that domain");
    return NULL;
}

/* POST /backends/drain, /backends/enable: a drained backend gets no new requests (not even
 * as the last resort when every other one is down); those in flight finish. */
static void admin_drain(const rp_request *req, rp_response *resp, void *user, bool drain)
{
    const struct target *t;
    struct backend *be = backend_of(req, resp, user, &t);

    if (!be)
        return;
    atomic_store_explicit(&be->drained, drain, memory_order_relaxed);
    log_info("backend %s (%s) %s by the admin API", be->addr, t->label,
             drain ? "drained" : "enabled");
    put_backend(resp, t, be);
    rp_response_write(resp, "\n", 1);
}

static void admin_backend_drain(const rp_request *req, rp_response *resp, void *user)
{
    admin_drain(req, resp, user, true);
}

static void admin_backend_enable(const rp_request *req, rp_response *resp, void *user)
{
    admin_drain(req, resp, user, false);
}

/* POST /backends/weight?domain=..&addr=..&weight=N (1-100, as in the file): every worker
 * rebuilds its balancing tables for the domain before its next pick there. */
static void admin_backend_weight(const rp_request *req, rp_response *resp, void *user)
{
    const struct target *t;
    struct backend *be = backend_of(req, resp, user, &t);
    char num[16], *end;
    size_t nl;
    long v;

    if (!be)
        return;
    if (!query_param(req->query, "weight", num, sizeof(num), &nl) || !nl ||
        (v = strtol(num, &end, 10), *end) || v < 1 || v > 100) {
        bad_request(resp, 400, "weight must be 1-100");
        return;
    }
    atomic_store_explicit(&be->weight, (int)v, memory_order_relaxed);
    atomic_fetch_add_explicit(&((struct target *)t)->wgen, 1, memory_order_release);
    log_info("backend %s (%s) weight %ld by the admin API", be->addr, t->label, v);
    put_backend(resp, t, be);
    rp_response_write(resp, "\n", 1);
}

/* POST /reload: the file again, through the daemon's handler (it knows the file): 200 with
 * the new generation and what changed, or 400 with FILE:LINE: what is wrong. */
static void admin_reload(const rp_request *req, rp_response *resp, void *user)
{
    rp_server *s = user;
    char msg[1024] = "";
    int rc;

    (void)req;
    json_answer(resp);
    if (!s->reload_fn) {
        bad_request(resp, 501, "this server has no reload handler (the daemon sets one)");
        return;
    }
    rc = s->reload_fn(s, s->reload_user, msg, sizeof(msg));
    if (rc) {
        rp_response_set_status(resp, 400);
        rp_response_printf(resp, "{\"error\":");
        json_str(resp, msg, strlen(msg));
        rp_response_printf(resp, "}\n");
        return;
    }
    worker_adopt(worker_self); /* answers after this one see the new configuration */
    rp_response_printf(
        resp, "{\"generation\":%llu,\"result\":", (unsigned long long)worker_self->snap->gen);
    json_str(resp, msg, strlen(msg));
    rp_response_printf(resp, "}\n");
}

int admin_setup(rp_server *s)
{
    static const struct {
        const char *method, *path;
        rp_handler_fn fn;
    } eps[] = {
        {"DELETE", "/cache/:domain", admin_purge_domain},
        {"DELETE", "/cache", admin_purge},
        {"GET", "/cache/stats", admin_stats},
        {"GET", "/backends", admin_backends},
        {"POST", "/backends/drain", admin_backend_drain},
        {"POST", "/backends/enable", admin_backend_enable},
        {"POST", "/backends/weight", admin_backend_weight},
        {"POST", "/reload", admin_reload},
    };
    int rc = 0;

    for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]) && !rc; i++)
        rc = local_add(&s->admin, eps[i].method, eps[i].path, eps[i].fn, s);
    return rc ? rc : metrics_admin_setup(s);
}

bool admin_authorized(const rp_server *s, const struct h1_request *r)
{
    const char *tok = worker_self ? worker_self->snap->admin_token : s->admin_token;
    size_t tl;

    if (!tok)
        return true;
    tl = strlen(tok);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        const struct h1_header *h = &r->headers[i];
        unsigned diff = 0;
        if (!h1_span_ieq(h->name, h->name_len, "authorization") || h->value_len != tl + 7 ||
            strncasecmp(h->value, "bearer ", 7))
            continue;
        for (size_t j = 0; j < tl; j++) /* constant time over the token's length */
            diff |= (unsigned char)(h->value[7 + j] ^ tok[j]);
        if (!diff)
            return true;
    }
    return false;
}
