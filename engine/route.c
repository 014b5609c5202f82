/* route.c: builds the routing snapshot from rp_add_proxy_domain / rp_set_http_routes calls
 * and matches requests against it: Host against domains (exact, then "*.suffix", longest
 * suffix first), then the path against routes (longest prefix first). */
#include "route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define DEF_CONNECT_MS 10000
#define DEF_READ_MS 30000
#define DEF_WRITE_MS 10000
#define DEF_IDLE_MS 90000
#define DEF_RETRIES 2
#define DEF_MAX_IDLE 32

/* "host[:port]" or "[ip6][:port]" in s[0..n), which a NUL or a '/' follows (either ends
 * strtol's digits); *port is def_port without one. strtol also takes a port written " 80" or
 * "+80"; the daemon's config check (config.c) refuses those before they get here. */
static int parse_hostport(const char *s, size_t n, char *host, size_t hostcap, int *port,
                          int def_port)
{
    struct hostport hp;

    if (hostport_split(s, n, &hp) || hp.host_len == 0 || hp.host_len >= hostcap)
        return -EINVAL;
    memcpy(host, hp.host, hp.host_len);
    host[hp.host_len] = 0;
    *port = def_port;
    if (hp.port) {
        char *end;
        long p = strtol(hp.port, &end, 10);
        if (end != s + n || p < 1 || p > 65535 || hp.port == end)
            return -EINVAL;
        *port = (int)p;
    }
    return 0;
}

static bool is_ipv4(const char *h)
{
    struct in_addr a;

    return inet_pton(AF_INET, h, &a) == 1;
}

static int resolve(const char *host, int port, struct backend *be)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    char portstr[8];
    int rc;

    snprintf(portstr, sizeof(portstr), "%d", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc) {
        log_error("backend %s: cannot resolve '%s': %s", be->addr, host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(&be->sa, res->ai_addr, res->ai_addrlen);
    be->salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int route_parse_backend(const char *addr, struct backend *be)
{
    char host[256];
    const char *p;
    size_t n, skip = 0;
    bool tls = false, h2 = false;
    int port;

    if (addr)
        skip = url_scheme_len(addr, &tls, &h2);
    if (!skip) {
        log_error("backend '%s': want http://host:port (or https://, h2c://, h2://)",
                  addr ? addr : "(null)");
        return -EINVAL;
    }
    be->tls = tls;
    be->h2 = h2;
    p = addr + skip;
    n = strlen(p);
    if (n && p[n - 1] == '/')
        n--;
    if (memchr(p, '/', n) || parse_hostport(p, n, host, sizeof(host), &port, tls ? 443 : 80)) {
        log_error("backend '%s': want http://host:port (or https://, h2c://, h2://)", addr);
        return -EINVAL;
    }
    be->addr = strdup(addr);
    be->authority = strndup(p, n);
    if (!be->addr || !be->authority)
        return -ENOMEM;
    be->authority_len = (uint32_t)n;
    /* SNI and the certificate name: a DNS name only (RFC 6066 forbids IP literals) */
    if (be->tls && !strchr(host, ':') && !is_ipv4(host) && !(be->sni = strdup(host)))
        return -ENOMEM;
    return resolve(host, port, be);
}

static struct backend *backend_new(struct route_table *rt, const char *addr, int weight)
{
    struct backend *be = calloc(1, sizeof(*be)), **arr;

    if (!be)
        return NULL;
    if (route_parse_backend(addr, be))
        goto err;
    arr = realloc(rt->backends, (rt->n_backends + 1) * sizeof(*arr));
    if (!arr)
        goto err;
    rt->backends = arr;
    be->weight = weight ? weight : 1;
    be->index = rt->n_backends;
    atomic_init(&be->healthy, 1);
    atomic_init(&be->refs, 1);
    rt->backends[rt->n_backends++] = be;
    return be;
err:
    free(be->addr);
    free(be->authority);
    free(be);
    return NULL;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v ? v : def;
}

static atomic_uint_least64_t target_uids; /* target.uid */

static struct target *target_new(struct route_table *rt, const char *name)
{
    struct target *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->name = strdup(name);
    if (!t->name) {
        free(t);
        return NULL;
    }
    t->name_len = (uint32_t)strlen(t->name);
    t->label = strdup(name);
    if (!t->label) {
        free(t->name);
        free(t);
        return NULL;
    }
    str_lower(t->label);
    t->index = rt->n_targets++;
    t->uid = atomic_fetch_add(&target_uids, 1) + 1;
    t->connect_timeout_ms = DEF_CONNECT_MS;
    t->read_timeout_ms = DEF_READ_MS;
    t->write_timeout_ms = DEF_WRITE_MS;
    t->idle_timeout_ms = DEF_IDLE_MS;
    t->max_retries = DEF_RETRIES;
    t->max_idle = DEF_MAX_IDLE;
    return t;
}

static void target_free(struct target *t)
{
    if (!t)
        return;
    free((char *)t->hc.path);
    free((char *)t->hc.host);
    free(t->tls_cert);
    free(t->tls_key);
    free(t->tls_ca_file);
    free(t->label);
    free(t->name);
    free(t->host_header);
    free(t->backends);
    free(t);
}

static int set_host_header(struct target *t, const char *h)
{
    if (!h || !*h)
        return 0;
    t->host_header = strdup(h);
    if (!t->host_header)
        return -ENOMEM;
    t->host_header_len = (uint32_t)strlen(h);
    return 0;
}

static int add_backends(struct route_table *rt, struct target *t, const rp_domain_config *d)
{
    t->backends = calloc(d->n_backends, sizeof(*t->backends));
    if (!t->backends)
        return -ENOMEM;
    for (size_t i = 0; i < d->n_backends; i++) {
        int w = d->backends[i].weight;
        if (w < 0 || w > 100) {
            log_error("domain %s: backend weight %d out of range 1-100", d->domain, w);
            return -EINVAL;
        }
        t->backends[i] = backend_new(rt, d->backends[i].addr, w);
        if (!t->backends[i])
            return -EINVAL;
        t->n_backends++;
    }
    return 0;
}

static bool valid_domain(const char *s)
{
    if (!s || !*s || strlen(s) > 253)
        return false;
    if (s[0] == '*' && (s[1] != '.' || !s[2]))
        return false;
    for (const char *p = s[0] == '*' ? s + 1 : s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

static void apply_domain_fields(struct target *t, const rp_domain_config *d)
{
    t->wildcard = d->domain[0] == '*';
    if (t->wildcard) { /* keep ".example.com": a suffix match needs the dot */
        memmove(t->name, t->name + 1, t->name_len);
        t->name_len--;
    }
    str_lower(t->name);
    t->lb = d->load_balancer;
    t->connect_timeout_ms = or_default(d->connect_timeout_ms, DEF_CONNECT_MS);
    t->read_timeout_ms = or_default(d->read_timeout_ms, DEF_READ_MS);
    t->write_timeout_ms = or_default(d->write_timeout_ms, DEF_WRITE_MS);
    t->idle_timeout_ms = or_default(d->idle_timeout_ms, DEF_IDLE_MS);
    t->max_retries = d->max_retries == 0 ? DEF_RETRIES : d->max_retries < 0 ? 0 : d->max_retries;
    t->try_timeout_ms = d->try_timeout_ms;
    t->hedge = d->hedge;
    t->no_upgrade = d->no_upgrade;
    t->send_pp = (uint8_t)d->send_proxy_protocol;
    t->max_idle = d->max_idle_conns == 0  ? DEF_MAX_IDLE
                  : d->max_idle_conns < 0 ? 0
                                          : d->max_idle_conns;
    t->preserve_host = d->preserve_host;
    t->tls_no_verify = d->tls_no_verify;
    t->no_cache = d->no_cache;
    t->hc = d->health_check;
    t->hc.path = NULL;
    t->hc.host = NULL;
    t->hc.interval_ms = or_default(t->hc.interval_ms, 10000);
    t->hc.timeout_ms = or_default(t->hc.timeout_ms, 5000);
    t->hc.fail_threshold = t->hc.fail_threshold > 0 ? t->hc.fail_threshold : 3;
    t->hc.success_threshold = t->hc.success_threshold > 0 ? t->hc.success_threshold : 2;
}

static int insert_domain(struct route_table *rt, struct target *t)
{
    struct target **arr = realloc(rt->domains, (rt->n_domains + 1) * sizeof(*arr));
    uint32_t i;

    if (!arr)
        return -ENOMEM;
    rt->domains = arr;
    /* exact names first; wildcards after them, longest suffix first */
    for (i = 0; i < rt->n_domains; i++) {
        struct target *o = rt->domains[i];
        if (!t->wildcard && o->wildcard)
            break;
        if (t->wildcard && o->wildcard && t->name_len > o->name_len)
            break;
    }
    memmove(&arr[i + 1], &arr[i], (rt->n_domains - i) * sizeof(*arr));
    arr[i] = t;
    rt->n_domains++;
    return 0;
}

int route_add_domain(struct route_table *rt, const rp_domain_config *d)
{
    struct target *t;
    int rc;

    if (!d || !valid_domain(d->domain) || !d->n_backends || !d->backends ||
        (unsigned)d->load_balancer > RP_LB_LEAST_LATENCY) {
        log_error("domain '%s': needs a valid name, backends and a known load_balancer",
                  d && d->domain ? d->domain : "(null)");
        return -EINVAL;
    }
    if (d->send_proxy_protocol < 0 || d->send_proxy_protocol > 2) {
        log_error("domain %s: send_proxy_protocol %d is not 0, 1 or 2", d->domain,
                  d->send_proxy_protocol);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < rt->n_domains; i++) {
        const char *n = rt->domains[i]->name;
        if (rt->domains[i]->wildcard ? d->domain[0] == '*' && !strcasecmp(n, d->domain + 1)
                                     : !strcasecmp(n, d->domain)) {
            log_error("domain '%s' is already configured", d->domain);
            return -EEXIST;
        }
    }
    t = target_new(rt, d->domain);
    if (!t)
        return -ENOMEM;
    apply_domain_fields(t, d);
    rc = add_backends(rt, t, d);
    if (!rc)
        rc = set_host_header(t, d->host_header);
    if (!rc && !(t->hc.path = strdup(d->health_check.path ? d->health_check.path : "")))
        rc = -ENOMEM;
    if (!rc && d->health_check.host && !(t->hc.host = strdup(d->health_check.host)))
        rc = -ENOMEM;
    if (!rc && (!d->tls_cert != !d->tls_key)) {
        log_error("domain %s: tls_cert and tls_key go together", d->domain);
        rc = -EINVAL;
    }
    if (!rc && d->tls_ca_file && !(t->tls_ca_file = strdup(d->tls_ca_file)))
        rc = -ENOMEM;
    if (!rc && d->tls_cert &&
        (!(t->tls_cert = strdup(d->tls_cert)) || !(t->tls_key = strdup(d->tls_key))))
        rc = -ENOMEM;
    for (uint32_t i = 0; !rc && t->send_pp && i < t->n_backends; i++)
        if (t->backends[i]->h2) {
            /* a multiplexed connection carries many clients: no one client's PROXY header */
            log_error("domain %s: send_proxy_protocol cannot go to an HTTP/2 backend (%s)",
                      d->domain, t->backends[i]->addr);
            rc = -EINVAL;
        }
    if (!rc && t->hc.path[0] && t->hc.path[0] != '/') {
        log_error("domain %s: health_check path must start with '/'", d->domain);
        rc = -EINVAL;
    }
    if (!rc)
        rc = insert_domain(rt, t);
    if (rc)
        target_free(t);
    return rc;
}

static int route_cmp(const void *a, const void *b)
{
    const struct target *x = *(struct target *const *)a, *y = *(struct target *const *)b;
    return x->name_len < y->name_len ? 1 : x->name_len > y->name_len ? -1 : 0;
}

static int add_route(struct route_table *rt, const rp_http_route *r)
{
    rp_backend_config bc = {.addr = r->backend, .weight = 1};
    rp_domain_config d = {.domain = r->path_prefix, .backends = &bc, .n_backends = 1};
    struct target *t;
    int rc;

    if (!r->path_prefix || r->path_prefix[0] != '/') {
        log_error("route '%s': path_prefix must start with '/'",
                  r->path_prefix ? r->path_prefix : "(null)");
        return -EINVAL;
    }
    t = target_new(rt, r->path_prefix);
    if (!t)
        return -ENOMEM;
    rc = add_backends(rt, t, &d);
    if (!rc)
        rc = set_host_header(t, r->host_header);
    if (rc) {
        target_free(t);
        return rc;
    }
    rt->routes[rt->n_routes++] = t;
    return 0;
}

int route_set_routes(struct route_table *rt, const rp_http_route *r, size_t n)
{
    for (uint32_t i = 0; i < rt->n_routes; i++)
        target_free(rt->routes[i]);
    free(rt->routes);
    rt->n_routes = 0;
    rt->routes = calloc(n ? n : 1, sizeof(*rt->routes));
    if (!rt->routes)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = add_route(rt, &r[i]);
        if (rc)
            return rc;
    }
    qsort(rt->routes, rt->n_routes, sizeof(*rt->routes), route_cmp);
    return 0;
}

void route_backend_free(struct backend *be)
{
    free(be->sni);
    free(be->addr);
    free(be->authority);
    free(be);
}

void route_table_fini(struct route_table *rt)
{
    for (uint32_t i = 0; i < rt->n_domains; i++)
        target_free(rt->domains[i]);
    for (uint32_t i = 0; i < rt->n_routes; i++)
        target_free(rt->routes[i]);
    for (uint32_t i = 0; i < rt->n_backends; i++)
        if (atomic_fetch_sub(&rt->backends[i]->refs, 1) == 1)
            route_backend_free(rt->backends[i]);
    free(rt->domains);
    free(rt->routes);
    free(rt->backends);
    memset(rt, 0, sizeof(*rt));
}

/* The host without its port: "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]". */
static uint32_t host_without_port(const char *h, uint32_t n)
{
    if (n && h[0] == '[') {
        const char *end = memchr(h, ']', n);
        return end ? (uint32_t)(end - h + 1) : n;
    }
    const char *colon = memchr(h, ':', n);
    return colon ? (uint32_t)(colon - h) : n;
}

static bool domain_matches(const struct target *t, const char *h, uint32_t n)
{
    if (!t->wildcard)
        return n == t->name_len && mem_ieq(h, t->name, n);
    /* ".example.com" matches "a.example.com" and "a.b.example.com", not "example.com" */
    return n > t->name_len && mem_ieq(h + n - t->name_len, t->name, t->name_len);
}

struct target *route_match(const struct route_table *rt, const char *host, uint32_t host_len,
                           const char *path, uint32_t path_len)
{
    if (host) {
        uint32_t n = host_without_port(host, host_len);
        if (n && host[n - 1] == '.') /* "example.com." is "example.com" */
            n--;
        for (uint32_t i = 0; i < rt->n_domains; i++)
            if (domain_matches(rt->domains[i], host, n))
                return rt->domains[i];
    }
    for (uint32_t i = 0; i < rt->n_routes; i++) {
        const struct target *t = rt->routes[i];
        if (path_len >= t->name_len && !memcmp(path, t->name, t->name_len))
            return rt->routes[i];
    }
    return NULL;
}
