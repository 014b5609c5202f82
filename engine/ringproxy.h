/* ringproxy.h: the public API of libringproxy, an HTTP/1.1 reverse proxy engine on io_uring.
 *
 * A front end creates a server, adds proxy domains and path routes, then calls
 * rp_listen_and_serve(), which runs one worker thread per core until rp_server_shutdown().
 * Every config struct is copied by the call that takes it; a zero field means the documented
 * default, so `rp_domain_config d = {0}` plus the fields you care about is valid.
 * Functions return 0 (or a count) on success and a negative errno value on failure.
 */
#ifndef RINGPROXY_H
#define RINGPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RP_BUILDING_LIBRARY) && defined(__GNUC__)
#define RP_API __attribute__((visibility("default")))
#else
#define RP_API
#endif

#define RP_VERSION "0.1.0"

typedef struct rp_server rp_server;

/* Load-balancing strategies; RP_LB_ROUND_ROBIN (0) is the default. */
typedef enum rp_lb_strategy {
    RP_LB_ROUND_ROBIN = 0,
    RP_LB_WEIGHTED_RR,
    RP_LB_LEAST_CONN,
    RP_LB_IP_HASH,
    RP_LB_RANDOM,
    RP_LB_LEAST_LATENCY,
} rp_lb_strategy;

typedef struct rp_backend_config {
    const char *addr; /* "http://host:port"; host is an IPv4/IPv6 literal or a name resolved
                         once when the domain is added */
    int weight;       /* 1-100, default 1 */
} rp_backend_config;

typedef struct rp_health_check_config {
    bool enabled;
    const char *path;      /* "" or NULL: TCP connect check; else GET path, 2xx-4xx is up */
    uint32_t interval_ms;  /* default 10s */
    uint32_t timeout_ms;   /* default 5s */
    int fail_threshold;    /* default 3 */
    int success_threshold; /* default 2 */
} rp_health_check_config;

/* max_retries: 0 means the default (2); RP_NO_RETRIES turns retries off. */
#define RP_NO_RETRIES (-1)

typedef struct rp_domain_config {
    const char *domain; /* "api.example.com" or "*.example.com"; case-insensitive */
    const rp_backend_config *backends;
    size_t n_backends;
    rp_lb_strategy load_balancer;
    uint32_t connect_timeout_ms; /* default 10s */
    uint32_t read_timeout_ms;    /* default 30s: no response byte / no body progress */
    uint32_t write_timeout_ms;   /* default 10s: no progress sending to the backend */
    int max_retries;             /* default 2 */
    int max_idle_conns;          /* default 32 idle pooled connections per backend per worker */
    uint32_t idle_timeout_ms;    /* default 90s */
    bool preserve_host;          /* forward the client's Host instead of the backend's */
    const char *host_header;     /* if set, the Host sent upstream */
    rp_health_check_config health_check;
    const char *tls_cert;        /* PEM chain served to TLS clients whose SNI matches this */
    const char *tls_key;         /* domain (both or neither); else the server's certificate */
    /* https:// backends: verified against tls_ca_file, or the system CA store when NULL,
     * unless tls_no_verify; SNI and the name checked are the backend's host (or
     * host_header). */
    const char *tls_ca_file;
    bool tls_no_verify;
} rp_domain_config;

/* A path-prefix route, used for requests whose Host matches no domain; longest prefix wins. */
typedef struct rp_http_route {
    const char *path_prefix;
    const char *backend;     /* "http://host:port" */
    const char *host_header; /* optional Host sent upstream */
} rp_http_route;

typedef struct rp_server_config {
    const char *const *listen; /* addresses "ip:port" / "[ip6]:port"; default "0.0.0.0:8080" */
    size_t n_listen;
    int workers;                   /* default: online CPUs */
    uint32_t header_timeout_ms;    /* default 10s: deadline for a whole request head */
    uint32_t keepalive_timeout_ms; /* default 60s: idle client connection between requests */
    uint32_t shutdown_timeout_ms;  /* default 30s: how long a drain waits for in-flight work */
    uint32_t max_header_bytes;     /* default 16 KiB: request head, else 431 */
    uint32_t max_header_count;     /* default 100 fields, else 431 */
    uint32_t max_target_len;       /* default 8 KiB, else 414 */
    uint64_t max_body_bytes;       /* default 64 MiB request body, else 413 */
    int log_level;                 /* 0 default (info), 1 warnings only, 2 debug */
    const char *const *listen_tls; /* TLS listeners, beside the plain ones; none by default */
    size_t n_listen_tls;
    const char *tls_cert;          /* PEM certificate chain and key for the TLS listeners */
    const char *tls_key;
} rp_server_config;

/* Creates a server from `cfg` (copied; NULL means all defaults). Returns NULL on bad
 * arguments or out of memory. Any thread; the server is not running until
 * rp_listen_and_serve(). */
RP_API rp_server *rp_server_new(const rp_server_config *cfg);

/* Adds a proxied domain (copied). Returns 0, -EINVAL for a bad field (the reason is logged),
 * -EEXIST for a duplicate domain, -EBUSY once the server runs. */
RP_API int rp_add_proxy_domain(rp_server *s, const rp_domain_config *domain);

/* Replaces the path routes with `routes[0..n)` (copied). Same errors as above. */
RP_API int rp_set_http_routes(rp_server *s, const rp_http_route *routes, size_t n);

/* Opens the listeners and runs the workers; blocks until rp_server_shutdown() has drained
 * them. Returns 0 after a clean drain, or a negative errno when start-up fails (address in
 * use, io_uring refused: the reason is logged). */
RP_API int rp_listen_and_serve(rp_server *s);

/* As rp_listen_and_serve, with every `listen` address (and every `listen_tls` one) serving
 * TLS 1.2/1.3 with the certificate chain and key in these PEM files; domains with their own
 * tls_cert are chosen by SNI. Returns -EINVAL when a file cannot be used (reason logged). */
RP_API int rp_listen_and_serve_tls(rp_server *s, const char *cert_file, const char *key_file);

/* Asks a running server to drain: listeners close, idle connections close, in-flight
 * requests finish, then rp_listen_and_serve() returns. Safe from any thread and from a
 * signal handler; a no-op if the server is not running. */
RP_API void rp_server_shutdown(rp_server *s);

/* Frees a server that is not running. NULL is a no-op. */
RP_API void rp_server_free(rp_server *s);

/* One backend as the balancer sees it. */
typedef struct rp_backend_state {
    const char *domain; /* "api.example.com", "*.example.com", or a route's path prefix */
    const char *addr;   /* as configured: "http://10.0.0.1:8080" */
    bool healthy;
    uint32_t in_flight; /* requests in progress, all workers */
    uint64_t requests;  /* attempts sent to it (a retried request counts on each backend) */
    uint64_t failures;  /* attempts that failed: connect errors, resets, timeouts */
} rp_backend_state;

/* Fills out[0..cap) with every backend's state, domains first, in configuration order, and
 * returns how many backends there are (call with cap 0 to size the array). Strings are
 * borrowed until rp_server_free(). Any thread, also while the server runs; the figures
 * are read without a lock, each one atomically. */
RP_API size_t rp_backend_states(rp_server *s, rp_backend_state *out, size_t cap);

/* The library's version string, RP_VERSION at build time. */
RP_API const char *rp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* RINGPROXY_H */
