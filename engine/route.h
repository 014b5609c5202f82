/* route.h: the routing snapshot: domains, path routes and their backends.
 *
 * Built once from the library's config calls, immutable while workers run and shared by all
 * of them. Per-backend counters that change at run time (health, in-flight) are atomics.
 */
#ifndef RP_ROUTE_H
#define RP_ROUTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ringproxy.h"

struct alog;

struct backend {
    char *addr;      /* as configured, for logs: "http://127.0.0.1:8080" */
    char *authority; /* "127.0.0.1:8080": the Host sent upstream unless overridden */
    char *sni;       /* https:// backends named by DNS: the name for SNI and verification */
    bool tls;        /* https:// or h2:// */
    bool h2;         /* h2c:// or h2://: HTTP/2 (upstream_h2.c) */
    uint32_t authority_len;
    struct sockaddr_storage sa;
    socklen_t salen;
    atomic_int weight; /* 1-100; the admin API may change it while running (target.wgen) */
    uint32_t index;    /* position in route_table.backends: indexes per-worker pools */
    atomic_int healthy;
    atomic_bool drained; /* the admin API took it out: no new requests, in-flight ones finish */
    atomic_bool retired; /* a reload removed it: its connections close instead of pooling */
    atomic_uint refs;    /* snapshots holding it (snapshot.h); 1 in a table not yet running */
    atomic_uint inflight;
    atomic_ulong requests;
    atomic_ulong failures;
    /* least_latency (balance.c): peak-EWMA of response time, written by bal_observe */
    atomic_uint_least64_t lat_ewma;  /* a double, in ns, as its bits */
    atomic_uint_least64_t lat_stamp; /* now_ns + 1 of the last sample; 0: none yet */
};

/* Where a request goes and how: one per domain, one per path route. */
struct target {
    char *name;  /* "api.example.com", "*.example.com" (stored as ".example.com"), or a prefix */
    char *label; /* as configured, lowercase: "*.example.com" */
    uint32_t name_len;
    bool wildcard;
    struct backend **backends;
    uint32_t n_backends;
    rp_lb_strategy lb;
    uint32_t connect_timeout_ms, read_timeout_ms, write_timeout_ms, idle_timeout_ms;
    int max_retries;         /* resolved: 0 means none */
    uint32_t try_timeout_ms; /* 0: off */
    bool hedge;
    bool no_upgrade; /* Upgrade requests are not tunnelled */
    uint8_t send_pp; /* send_proxy_protocol: 0 none, 1 or 2 its version */
    int max_idle;    /* resolved: 0 means no pooling */
    bool preserve_host;
    char *host_header;         /* NULL: not set */
    rp_health_check_config hc; /* resolved: defaults filled in, path owned ("" for TCP) */
    char *tls_cert, *tls_key;  /* the certificate chosen by SNI for this domain, or NULL */
    char *tls_ca_file;         /* https:// backends: the CAs to verify them with (NULL: system) */
    bool tls_no_verify;
    bool no_cache;          /* the domain never uses the response cache */
    struct tls_ctx *up_tls; /* client context for https:// backends, while running */
    uint32_t host_header_len;
    const struct alog *alog; /* its access log (accesslog.h) when alog_set: NULL is "off" */
    bool alog_set;           /* else the server's log */
    int8_t request_id;       /* 1 on, -1 off, 0 the server's */
    uint32_t index;          /* position among all targets: indexes per-worker balancer state */
    uint64_t uid;            /* never reused in a process (an index is, by later reloads) */
    atomic_uint wgen; /* bumped when a backend's weight changes: workers rebuild their tables */
};

struct route_table {
    struct target **domains; /* exact names first, then wildcards by suffix length, longest first */
    uint32_t n_domains;
    struct target **routes; /* longest prefix first */
    uint32_t n_routes;
    struct backend **backends;
    uint32_t n_backends;
    uint32_t n_targets;
};

/* Every live target, domains first, then routes: for (i = 0; i < route_count(rt); i++). */
static inline uint32_t route_count(const struct route_table *rt)
{
    return rt->n_domains + rt->n_routes;
}

static inline struct target *route_target(const struct route_table *rt, uint32_t i)
{
    return i < rt->n_domains ? rt->domains[i] : rt->routes[i - rt->n_domains];
}

/* Adds a domain / replaces the routes. Return 0 or -EINVAL/-EEXIST/-ENOMEM; reasons logged. */
int route_add_domain(struct route_table *rt, const rp_domain_config *d);
int route_set_routes(struct route_table *rt, const rp_http_route *r, size_t n);
void route_table_fini(struct route_table *rt);
/* Frees one backend (route_table_fini frees those whose last reference it drops). */
void route_backend_free(struct backend *be);

/* Finds the target for a request: Host (any case, port ignored) against the domains, then
 * the path against the routes. Returns NULL when nothing matches (answer 404). */
struct target *route_match(const struct route_table *rt, const char *host, uint32_t host_len,
                           const char *path, uint32_t path_len);

/* Parses "http://host[:port][/]" into sa (names resolved with getaddrinfo, first address).
 * Returns 0 or -EINVAL. Start-up only: may block on DNS. */
int route_parse_backend(const char *addr, struct backend *be);

#endif /* RP_ROUTE_H */
