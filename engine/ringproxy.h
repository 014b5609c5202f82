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

#if defined(__GNUC__)
#define RP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RP_PRINTF(f, a)
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
    const char *host;      /* Host of an HTTP check; NULL: what traffic sends (host_header, or
                              the backend's host:port) */
} rp_health_check_config;

/* An access log: one line per request answered (README "Access log"). A zero struct means
 * none here: a domain's then uses the server's. */
typedef struct rp_access_log_config {
    const char *path;   /* opened O_APPEND (created 0644) when the server or domain is added */
    const char *format; /* "combined" (NULL: the default), "json", or a template of nginx
                           variables: "$remote_addr $status $request_time ${http_x_foo}" */
    bool off;           /* in a domain: no log for it, whatever the server's (config: "off") */
} rp_access_log_config;

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
    int max_idle_conns;          /* default 32 idle pooled connections per backend per worker
                                    (more while the last 10 s needed them; 0: no pooling) */
    uint32_t idle_timeout_ms;    /* default 90s */
    bool preserve_host;          /* forward the client's Host instead of the backend's */
    const char *host_header;     /* if set, the Host sent upstream */
    rp_health_check_config health_check;
    const char *tls_cert; /* PEM chain served to TLS clients whose SNI matches this */
    const char *tls_key;  /* domain (both or neither); else the server's certificate */
    /* https:// backends: verified against tls_ca_file, or the system CA store when NULL,
     * unless tls_no_verify; SNI and the name checked are the backend's host (or
     * host_header). */
    const char *tls_ca_file;
    bool tls_no_verify;
    bool no_cache; /* never use the response cache for this domain (config: cache = false) */
    /* try_timeout: an attempt at an idempotent request (or one with an Idempotency-Key) that
     * has no response head this long after it started is retried on another backend, and
     * counts as a failure for passive health. 0 (the default): off. With `hedge`, the slow
     * attempt is kept and the first response head of the two wins (the other is closed). */
    uint32_t try_timeout_ms;
    bool hedge;
    /* Requests with Connection: upgrade and an Upgrade field (WebSocket) are forwarded with
     * both, and a 101 from the backend turns the exchange into a byte tunnel; no_upgrade
     * (config: upgrade = false) drops the Upgrade field instead, as for any hop-by-hop one. */
    bool no_upgrade;
    /* 1 or 2: every backend connection begins with a PROXY protocol header of that version
     * naming the client (as HAProxy's send-proxy / send-proxy-v2), for backends that read
     * one. Such a connection carries one client's request and is never pooled (health
     * checks send v1 UNKNOWN or v2 LOCAL). 0 (the default): none. */
    int send_proxy_protocol;
    /* This domain's access log instead of the server's (or none: access_log.off). */
    rp_access_log_config access_log;
    /* 1: send X-Request-Id upstream (as rp_server_config.request_id), -1: don't, 0: the
     * server's setting. */
    int request_id;
} rp_domain_config;

/* A path-prefix route, used for requests whose Host matches no domain; longest prefix wins. */
typedef struct rp_http_route {
    const char *path_prefix;
    const char *backend;     /* "http://host:port" */
    const char *host_header; /* optional Host sent upstream */
} rp_http_route;

/* A listener with options, for rp_server_config.listeners (the `listen` and `listen_tls`
 * arrays are listeners without any). */
typedef struct rp_listener_config {
    const char *addr; /* "ip:port" / "[ip6]:port" */
    bool tls;         /* TLS, as a `listen_tls` address (rp_listen_and_serve_tls: all are) */
    /* PROXY protocol (v1 and v2, as HAProxy, IPVS or a cloud load balancer send it): every
     * connection must begin with the header, before any TLS or HTTP byte, within
     * header_timeout; the client address it carries replaces the peer's everywhere
     * (X-Forwarded-For, ip_hash, hooks' client_addr). A connection whose header is missing
     * or malformed is closed without an answer and counted. */
    bool proxy_protocol;
    /* The peers allowed to send one: address blocks "10.0.0.0/8", "::1/128", or single
     * addresses; others are closed at accept. None (the default): any peer. Needs
     * proxy_protocol; a block with bits set past its prefix ("10.0.0.1/8") is refused. */
    const char *const *proxy_protocol_from;
    size_t n_proxy_protocol_from;
} rp_listener_config;

typedef struct rp_server_config {
    /* Addresses "ip:port" / "[ip6]:port". With no listener at all (listen, listen_tls and
     * listeners all empty), "0.0.0.0:8080". */
    const char *const *listen;
    size_t n_listen;
    int workers;                     /* default: online CPUs */
    uint32_t header_timeout_ms;      /* default 10s: deadline for a whole request head */
    uint32_t keepalive_timeout_ms;   /* default 60s: idle client connection between requests */
    uint32_t shutdown_timeout_ms;    /* default 30s: how long a drain waits for in-flight work */
    uint32_t tunnel_idle_timeout_ms; /* default 1h: a tunnel (WebSocket) with no byte either way */
    uint32_t max_header_bytes;       /* default 16 KiB: request head, else 431 */
    uint32_t max_header_count;       /* default 100 fields, else 431 */
    uint32_t max_target_len;         /* default 8 KiB, else 414 */
    uint64_t max_body_bytes;         /* default 64 MiB request body, else 413 */
    int log_level;                   /* 0 default (info), 1 warnings only, 2 debug */
    const char *const *listen_tls;   /* TLS listeners, beside the plain ones; none by default */
    size_t n_listen_tls;
    const char *tls_cert; /* PEM certificate chain and key for the TLS listeners */
    const char *tls_key;
    uint32_t max_local_body_bytes; /* default 1 MiB: request body to a local endpoint, else 413 */
    /* The cache admin API (purge, stats) on a listener of its own, "127.0.0.1:9901"; NULL:
     * none. With admin_token set, requests must carry "Authorization: Bearer <token>". */
    const char *admin_listen;
    const char *admin_token;
    /* Listeners with options (PROXY protocol), beside those of listen and listen_tls. */
    const rp_listener_config *listeners;
    size_t n_listeners;
    /* The access log of every request no domain logs otherwise (those not routed too);
     * none by default. */
    rp_access_log_config access_log;
    /* Every proxied request carries X-Request-Id: the client's when it sent one of 1-64
     * characters [A-Za-z0-9._-], else $request_id, 32 hex digits made here (the client's
     * field is then replaced). Off (the default): the client's field passes as it came. */
    bool request_id;
    /* HTTP/2 (README "HTTP/2"): TLS listeners offer ALPN "h2" before "http/1.1" unless
     * no_http2 (config: http2 = false); plain listeners also take HTTP/2 with prior
     * knowledge (a connection that begins with the client preface) when h2c. Upgrade: h2c
     * is not supported (as nginx). A connection serves at most h2_max_concurrent_streams
     * streams at once (default 128); its header list is bounded by max_header_bytes and
     * max_header_count as an HTTP/1.1 head is. */
    bool no_http2;
    bool h2c;
    uint32_t h2_max_concurrent_streams;
} rp_server_config;

/* Creates a server from `cfg` (copied; NULL means all defaults). Returns NULL on bad
 * arguments (such as a listener's proxy_protocol_from entry that is no address block: the
 * reason is logged) or out of memory. Any thread; the server is not running until
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

/* Asks a running server to open its access log files again by their paths (after logrotate
 * renamed them): each worker writes to the new file from its next loop pass (within 100 ms),
 * no line is lost, the old file is closed once no write to it is in flight. Safe from any
 * thread and from a signal handler (the daemon calls it on SIGUSR1); a no-op without access
 * logs. A path that cannot be opened again is logged and keeps its old file. */
RP_API void rp_server_reopen_logs(rp_server *s);

/* Frees a server that is not running. NULL is a no-op. */
RP_API void rp_server_free(rp_server *s);

/* Reloads a running server from `staged`: a server built with rp_server_new and the same
 * config calls as at start, never started. Its domains, routes, settings (timeouts,
 * limits), listeners, TLS certificate files and admin token become the running server's in
 * one atomic swap: requests in flight finish on the configuration they started with, new
 * ones use the new one. Backends whose domain and address are unchanged keep their health,
 * counters, latency average and pooled connections (their weight and drained state are
 * reset to staged's: the file is the truth); removed ones finish their in-flight requests
 * and close their idle connections; listeners are opened and closed by difference (kept
 * ones are never closed); certificates are read again; the cache keeps its entries and
 * takes staged's settings (rp_set_proxy_cache on staged: rules, limits, compression level;
 * not compress_threads, and turning the cache on or off needs a restart). Hooks and local
 * endpoints stay as they are (staged's are ignored), and `workers` cannot change. On failure
 * (-EINVAL: a certificate or listener that cannot be used; -ENOSPC: more new backends or
 * domains than this run has room for) nothing changed. Either way msg[0..cap) says what
 * happened (the generation and what was added and removed, or the reason). staged is left
 * empty of what moved; free it with rp_server_free. Any thread but a worker's (blocks on
 * file reads and binds). */
RP_API int rp_server_reload(rp_server *s, rp_server *staged, char *msg, size_t cap);

/* What POST /reload on the admin listener runs (the daemon's: it reads the file again and
 * calls rp_server_reload). Returns 0, or non-zero with msg[0..cap) set to the reason, which
 * the admin answer carries with status 400. It runs on the admin listener's thread. */
typedef int (*rp_reload_fn)(rp_server *s, void *user, char *msg, size_t cap);

/* A front end's reload that failed before it could call rp_server_reload (its file did not
 * load): logged with `why` and counted as a refused reload (ringproxy_reload_failures_total,
 * ringproxy_config_last_reload_successful 0), as rp_server_reload's own refusals are. */
RP_API void rp_server_reload_refused(rp_server *s, const char *why);
RP_API void rp_server_set_reload_handler(rp_server *s, rp_reload_fn fn, void *user);

/* The configuration generation in force (1 until the first reload) and how many reloads
 * took effect. Any thread. */
RP_API uint64_t rp_server_generation(rp_server *s);

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
 * borrowed until rp_server_free() or the next reload. Any thread, also while the server
 * runs; the figures are read without a lock, each one atomically. */
RP_API size_t rp_backend_states(rp_server *s, rp_backend_state *out, size_t cap);

/* ---- response cache ---------------------------------------------------------------------
 *
 * A shared in-memory cache with RFC 9111 shared-cache semantics, off until
 * rp_set_proxy_cache(). Responses with explicit freshness (s-maxage, max-age, Expires) are
 * stored when cacheable; responses without it only when a rule or a hook admits them, for
 * default_max_age (or the rule's or the hook's). Served responses carry Age and X-Cache:
 * HIT, MISS, STALE or REVALIDATED. */

/* Per path prefix (longest wins): which methods use the cache, which statuses are stored,
 * how long responses without explicit freshness live, how big a body may be. */
typedef struct rp_cache_rule {
    const char *path_prefix;
    uint64_t max_age_ms;        /* 0: default_max_age */
    const char *const *methods; /* "GET", "HEAD"; none: GET and HEAD */
    size_t n_methods;
    const int *status_only; /* statuses stored; none: the cacheable defaults */
    size_t n_status_only;
    uint64_t max_bytes; /* largest body stored; 0: max_entry_size */
} rp_cache_rule;

/* A zero field means the default shown. */
typedef struct rp_cache_config {
    uint64_t default_max_age_ms;        /* 5 min */
    uint64_t max_total_bytes;           /* 256 MiB: every byte entries cost, gzip copies too */
    uint32_t max_entries;               /* 10000 */
    uint64_t max_entry_size;            /* 4 MiB */
    bool pre_compress;                  /* gzip compressible entries in the background */
    int compress_level;                 /* 6 (1-12) */
    uint32_t compress_min_len;          /* 256 */
    uint64_t stale_while_revalidate_ms; /* 0: only the response's own directive */
    const rp_cache_rule *rules;
    size_t n_rules;
    int compress_threads;     /* 1 */
    uint32_t lock_timeout_ms; /* 5 s: concurrent misses on one URL wait this long for the
                                 first one's response, then go to the backend themselves */
    bool no_x_cache;          /* leave out the X-Cache header */
} rp_cache_config;

/* Turns the cache on with `cfg` (copied; NULL: all defaults). 0, -EINVAL (reason logged),
 * -EBUSY once the server runs, -ENOMEM. */
RP_API int rp_set_proxy_cache(rp_server *s, const rp_cache_config *cfg);

typedef struct rp_cache_stats {
    uint64_t entries, bytes, hits, misses;
    uint64_t stores, evictions, purges;
} rp_cache_stats;

/* Purges: one URL's entries (every variant; method "GET" or "HEAD", host as the client sends
 * it, path with query) -> true if any was stored; every entry of a configured domain -> the
 * count; everything -> the count. Any thread, also while the server runs. */
RP_API bool rp_purge_proxy_cache(rp_server *s, const char *method, const char *host,
                                 const char *path);
RP_API size_t rp_purge_domain_cache(rp_server *s, const char *domain);
RP_API size_t rp_purge_all_proxy_cache(rp_server *s);
/* Fills *st (all zero without a cache). Any thread. */
RP_API void rp_proxy_cache_stats(rp_server *s, rp_cache_stats *st);

/* How many worker threads the server runs (the config's `workers`, resolved): hooks see a
 * worker index in [0, rp_server_workers(s)). */
RP_API int rp_server_workers(const rp_server *s);

/* ---- handing listening sockets over (binary upgrade without a refused connection) ------
 *
 * The old process hands its listening sockets to the new one (over a Unix socket, with
 * SCM_RIGHTS: the daemon's engine/upgrade.c does this); the new one serves on the same
 * sockets, so the kernel's accept queues and SO_REUSEPORT group never change and no
 * connection is refused or reset; then the old one drains. */

/* Called once, from the thread in rp_listen_and_serve(), when every worker has set up and
 * been let go: from then on the server accepts on every listener (a connection that comes
 * before a worker's first accept waits in the listen backlog). Not called when start-up
 * fails. The workers keep serving while fn runs; fn may call rp_server_shutdown(). */
typedef void (*rp_ready_fn)(rp_server *s, void *user);

/* Registers fn (one per server; NULL removes it). Returns 0, or -EBUSY once the server
 * runs. */
RP_API int rp_server_on_ready(rp_server *s, rp_ready_fn fn, void *user);

typedef enum rp_listener_kind {
    RP_LISTENER_PLAIN = 0,
    RP_LISTENER_TLS,
    RP_LISTENER_ADMIN, /* the admin API's listener (admin_listen) */
} rp_listener_kind;

#define RP_LISTENER_ADDR_MAX 64 /* "[ipv6]:port" and its NUL fit */

/* One listening socket of a running server. */
typedef struct rp_listener_fd {
    char addr[RP_LISTENER_ADDR_MAX]; /* the address as configured, "ip:port" / "[ip6]:port" */
    rp_listener_kind kind;
    int fd; /* a duplicate (close-on-exec) of the worker's socket: the caller closes it */
} rp_listener_fd;

/* Every listening socket the running server accepts on, one per worker per address (an
 * address's SO_REUSEPORT group), so that another process can serve on the same sockets.
 * Returns their number n; when n <= cap, out[0..n) is filled and each fd is a duplicate the
 * caller owns; when n > cap nothing is written (call again with room for n). Returns 0 when
 * the server is not serving (not started, or draining: a draining worker has closed its
 * sockets), or a negative errno when a duplicate cannot be made (none is left open then).
 * Any thread, also while the server runs: the list is read under the server's lock. */
RP_API int rp_server_listeners(rp_server *s, rp_listener_fd *out, size_t cap);

/* Before rp_listen_and_serve(): serve one of the server's listen addresses on `fd`, a
 * listening TCP socket bound to it that another process handed over, instead of opening a
 * socket for it. Call once for each socket of the address's group. The next
 * rp_listen_and_serve() spreads an address's sockets over the workers that serve it (the
 * admin listener's: its own thread): every socket gets at least one worker accepting on it,
 * a worker may get several, and where there are fewer sockets than workers some workers
 * share one, so no socket joins or leaves the group. Addresses without inherited sockets
 * are opened as usual. From a successful call the server owns fd: the run closes it
 * (whatever its outcome), or rp_server_free() if the server never runs. On failure the
 * caller keeps fd. Returns 0; -ENOENT when no listener of the server has that address (the
 * caller closes fd: the new configuration dropped it); -EINVAL when fd is not a listening
 * TCP socket bound to exactly that address; -ENOMEM; -EBUSY while the server runs. */
RP_API int rp_server_inherit_listener(rp_server *s, const char *addr, int fd);

/* ---- hooks and local endpoints ----------------------------------------------------------
 *
 * Hooks and handlers run on the worker threads, concurrently: each worker calls them one at
 * a time for its own connections, and several workers may be inside the same hook at once.
 * They must not block (no sleeping, no blocking I/O): the worker's connections wait while a
 * hook runs. Each call says which worker runs it (`worker`, 0-based), so per-worker state
 * indexed by it needs no lock. Register before rp_listen_and_serve(); registering while the
 * server runs returns -EBUSY. Hooks of one kind run in registration order; a kind with no
 * hook registered costs nothing on the request path.
 *
 * Strings are borrowed until the hook returns. rp_str spans are not NUL-terminated: print
 * them with "%.*s", (int)str.len, str.p. Values passed in (names, values, bodies) are copied.
 */

typedef struct rp_str {
    const char *p;
    size_t len;
} rp_str;

/* A list of header fields: the request or response being forwarded, or a local answer.
 * Hop-by-hop fields (Connection and the fields it names, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade) are not listed. */
typedef struct rp_headers rp_headers;

/* How many fields; the i-th one (false past the end), in order. */
RP_API size_t rp_headers_count(const rp_headers *h);
RP_API bool rp_headers_at(const rp_headers *h, size_t i, rp_str *name, rp_str *value);
/* The first field named `name` (case-insensitive): true and its value, or false. */
RP_API bool rp_headers_get(const rp_headers *h, const char *name, rp_str *value);
/* Edits. add appends a field; set replaces every field of that name with one; remove drops
 * them all and returns how many it dropped. Errors: -EINVAL for a name that is not an HTTP
 * token or a value with CR, LF or NUL; -EPERM for fields the proxy owns (framing and
 * hop-by-hop fields, Host, Expect, X-Forwarded-For/-Proto/-Host on requests); -E2BIG past
 * 64 added fields or 8 KiB of added bytes; -ENOMEM. */
RP_API int rp_headers_add(rp_headers *h, const char *name, const char *value);
RP_API int rp_headers_set(rp_headers *h, const char *name, const char *value);
RP_API int rp_headers_remove(rp_headers *h, const char *name);

/* A response the proxy answers itself: a local endpoint's, or a request hook's rejection.
 * The status defaults to 200 for handlers; Content-Type to "text/plain; charset=utf-8";
 * Content-Length is computed. */
typedef struct rp_response rp_response;

/* 200-599; returns 0 or -EINVAL. */
RP_API int rp_response_set_status(rp_response *r, int status);
/* The answer's header fields, to edit with rp_headers_add/set/remove. */
RP_API rp_headers *rp_response_headers(rp_response *r);
/* Appends body bytes (copied). 0, or -E2BIG past 8 MiB, -ENOMEM. */
RP_API int rp_response_write(rp_response *r, const void *p, size_t n);
RP_API int rp_response_printf(rp_response *r, const char *fmt, ...) RP_PRINTF(2, 3);

/* What a request hook sees. The fields are read-only; change the request through the
 * functions below. Valid only during the call. */
typedef struct rp_proxy_request {
    const char *domain;      /* the matched domain as configured, or the route's prefix */
    const char *backend;     /* the backend chosen for the first attempt ("http://10.0.0.1:80") */
    const char *client_addr; /* "127.0.0.1", "::1" */
    rp_str method;
    rp_str path;         /* as sent: path and query */
    rp_str host;         /* the client's Host (empty if none) */
    rp_headers *headers; /* the fields sent upstream (edit them) */
    int worker;
    struct rp_hook_ctx *ctx_; /* the engine's */
} rp_proxy_request;

/* Returning false rejects the request: the client gets 502, or the answer made with
 * rp_proxy_request_respond(); nothing reaches a backend and later request hooks do not run. */
typedef bool (*rp_proxy_request_fn)(rp_proxy_request *pr, void *user);

/* The Host field sent upstream (instead of the backend's authority, host_header or
 * preserve_host). 0, or -EINVAL for a value with CR, LF, NUL, space or over 255 bytes. */
RP_API int rp_proxy_request_set_host(rp_proxy_request *pr, const char *host);
/* Starts the answer given when the hook returns false, with this status (200-599); returns
 * the answer to add headers and a body to, or NULL (bad status, out of memory: the client
 * then gets 502). */
RP_API rp_response *rp_proxy_request_respond(rp_proxy_request *pr, int status);

/* What a response hook sees, when the backend's final response head has arrived and before
 * it goes to the client. `status` may be changed (to 200-599; a change that would contradict
 * the body's framing, to or from 204/304, is ignored and logged); `headers` may be edited. */
typedef struct rp_proxy_response {
    const char *domain;
    const char *backend; /* the backend that answered */
    rp_str method;       /* of the request */
    rp_str path;
    int status;
    rp_headers *headers;
    int worker;
    struct rp_hook_ctx *ctx_;
} rp_proxy_response;

typedef void (*rp_proxy_response_fn)(rp_proxy_response *pr, void *user);

/* Per-entry options for rp_cache_this; a zero struct (or NULL) means the cache's settings. */
typedef struct rp_cache_opts {
    int pre_compress;          /* 0: the cache's setting, 1: gzip this entry, -1: never */
    uint32_t compress_min_len; /* 0: the cache's setting */
} rp_cache_opts;

/* From a response hook: store this response for ttl_ms (0: the default_max_age) when it has
 * no explicit freshness of its own, and for at most max_hits hits (0: unlimited). It is
 * stored if it is storable at all (not no-store, not private, ...; Set-Cookie is allowed
 * by this call). No-op without a cache. */
RP_API void rp_cache_this(rp_proxy_response *pr, uint64_t ttl_ms, uint32_t max_hits,
                          const rp_cache_opts *opts);
/* From a response hook: never store this response, whatever rules and headers say. */
RP_API void rp_dont_cache(rp_proxy_response *pr);

/* One failed attempt to get a response from a backend (the request may then be retried on
 * another backend, or answered 502/503/504). */
typedef struct rp_proxy_error {
    const char *domain;
    const char *backend;
    int attempt;         /* 1 for the first backend tried, 2 for the first retry, ... */
    int err;             /* an errno value: ECONNREFUSED, ETIMEDOUT, ECONNRESET, EBADMSG ... */
    const char *message; /* "connect failed: Connection refused" */
    rp_str method;
    rp_str path;
    int worker;
} rp_proxy_error;

typedef void (*rp_proxy_error_fn)(const rp_proxy_error *e, void *user);

/* Register a hook; `user` is passed back to it. 0, -EINVAL (NULL fn), -EBUSY, -ENOMEM. */
RP_API int rp_on_proxy_request(rp_server *s, rp_proxy_request_fn fn, void *user);
RP_API int rp_on_proxy_response(rp_server *s, rp_proxy_response_fn fn, void *user);
RP_API int rp_on_proxy_error(rp_server *s, rp_proxy_error_fn fn, void *user);

/* A request to a local endpoint. The body is read whole first (at most
 * max_local_body_bytes, else 413). */
typedef struct rp_request {
    rp_str method;
    rp_str path;  /* without the query */
    rp_str query; /* after '?', not decoded; empty if none */
    rp_str host;
    const rp_headers *headers;
    rp_str body;
    const char *client_addr;
    int worker;
    struct rp_hook_ctx *ctx_;
} rp_request;

/* The value of the pattern's `:name` segment, percent-decoded: true, or false if the
 * pattern has no such parameter. */
RP_API bool rp_request_param(const rp_request *req, const char *name, rp_str *value);

typedef void (*rp_handler_fn)(const rp_request *req, rp_response *resp, void *user);

/* Serves `method` on paths matching `pattern` on every listener, before any proxying:
 * "/status", "/admin/cache/:domain" (a `:name` segment matches one non-empty segment);
 * a last segment `*name` matches the rest of the path, possibly empty ("/files" then
 * "*rest"). A path that matches a pattern registered only for other methods gets 405 with
 * Allow; HEAD is served by a GET handler without the body. Literal segments win over
 * parameters. Returns 0, -EINVAL (bad
 * method or pattern), -EEXIST (method and pattern already served), -EBUSY, -ENOMEM. */
RP_API int rp_handle(rp_server *s, const char *method, const char *pattern, rp_handler_fn fn,
                     void *user);

/* The library's version string, RP_VERSION at build time. */
RP_API const char *rp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* RINGPROXY_H */
