/* server.c: the public library API of ringproxy.h: the server object, its configuration
 * defaults, listener sockets (one SO_REUSEPORT socket per worker per address), the io_uring
 * availability probe, and the worker threads' start and join.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../cache/cache.h"
#include "../tls/tls.h"
#include "internal.h"
#include "log.h"
#include "proxy_proto.h"

const char *rp_version(void)
{
    return RP_VERSION;
}

static void apply_defaults(rp_server_config *c)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (c->workers <= 0)
        c->workers = n > 0 ? (int)n : 1;
    if (!c->header_timeout_ms)
        c->header_timeout_ms = 10000;
    if (!c->keepalive_timeout_ms)
        c->keepalive_timeout_ms = 60000;
    if (!c->shutdown_timeout_ms)
        c->shutdown_timeout_ms = 30000;
    if (!c->tunnel_idle_timeout_ms)
        c->tunnel_idle_timeout_ms = 3600 * 1000;
    if (!c->max_header_bytes)
        c->max_header_bytes = 16 * 1024;
    if (!c->max_header_count)
        c->max_header_count = 100;
    if (!c->max_target_len)
        c->max_target_len = 8 * 1024;
    if (!c->max_body_bytes)
        c->max_body_bytes = 64ull * 1024 * 1024;
    if (!c->max_local_body_bytes)
        c->max_local_body_bytes = 1024 * 1024;
}

static int add_listen(rp_server *s, const char *addr, bool tls)
{
    struct listen_spec *ls = realloc(s->listen, (s->n_listen + 1) * sizeof(*ls));

    if (!ls)
        return -ENOMEM;
    s->listen = ls;
    ls[s->n_listen] = (struct listen_spec){.addr = strdup(addr), .tls = tls};
    if (!ls[s->n_listen].addr)
        return -ENOMEM;
    s->n_listen++;
    return 0;
}

/* A listener with options: its PROXY protocol settings, the allowed peers parsed. */
static int add_listener(rp_server *s, const rp_listener_config *l)
{
    size_t n = l->n_proxy_protocol_from;
    struct listen_spec *ls;
    char want[INET6_ADDRSTRLEN + 4];
    int rc;

    if (!l->addr || (n && !l->proxy_protocol_from) || n > UINT32_MAX)
        return -EINVAL;
    if (n && !l->proxy_protocol) {
        log_error("listener %s: proxy_protocol_from needs proxy_protocol", l->addr);
        return -EINVAL;
    }
    rc = add_listen(s, l->addr, l->tls);
    if (rc)
        return rc;
    ls = &s->listen[s->n_listen - 1];
    ls->proxy_protocol = l->proxy_protocol;
    if (n && !(ls->pp_from = calloc(n, sizeof(*ls->pp_from))))
        return -ENOMEM;
    for (; ls->n_pp_from < n; ls->n_pp_from++) {
        const char *b = l->proxy_protocol_from[ls->n_pp_from];
        rc = b ? pp_cidr_parse(b, &ls->pp_from[ls->n_pp_from]) : -EINVAL;
        if (rc == -EDOM) {
            pp_cidr_format(&ls->pp_from[ls->n_pp_from], want, sizeof(want));
            log_error("listener %s: proxy_protocol_from \"%s\" has bits set past its prefix "
                      "(\"%s\"?)",
                      l->addr, b, want);
        } else if (rc) {
            log_error("listener %s: proxy_protocol_from \"%s\" is not an address block "
                      "(\"10.0.0.0/8\", \"::1/128\" or an address)",
                      l->addr, b ? b : "(null)");
        }
        if (rc)
            return -EINVAL;
    }
    return 0;
}

/* Copies what the caller's config points at: listen addresses and TLS file names. */
static int copy_config(rp_server *s)
{
    rp_server_config *c = &s->cfg;
    int rc = 0;

    for (size_t i = 0; !rc && i < c->n_listen; i++)
        rc = add_listen(s, c->listen[i], false);
    for (size_t i = 0; !rc && i < c->n_listen_tls; i++)
        rc = add_listen(s, c->listen_tls[i], true);
    for (size_t i = 0; !rc && i < c->n_listeners; i++)
        rc = add_listener(s, &c->listeners[i]);
    if (!rc && !s->n_listen)
        rc = add_listen(s, "0.0.0.0:8080", false);
    c->listen = c->listen_tls = NULL; /* borrowed: s->listen holds the copies */
    c->listeners = NULL;
    if (!rc && c->tls_cert && !(c->tls_cert = s->tls_cert = strdup(c->tls_cert)))
        rc = -ENOMEM;
    if (!rc && c->tls_key && !(c->tls_key = s->tls_key = strdup(c->tls_key)))
        rc = -ENOMEM;
    if (!rc && c->admin_listen) {
        rc = add_listen(s, c->admin_listen, false);
        if (!rc)
            s->listen[s->n_listen - 1].admin = true;
        if (!rc && c->admin_token && !(s->admin_token = strdup(c->admin_token)))
            rc = -ENOMEM;
        if (!rc)
            rc = admin_setup(s);
    }
    c->admin_listen = NULL; /* in s->listen */
    c->admin_token = NULL;  /* only s->admin_token holds it: never kept twice, never logged */
    return rc;
}

/* The layers the workers run, in order: metrics first (the others count from their start),
 * sessions drain before the pools close under them. */
static const struct worker_module *const worker_modules[] = {
    &metrics_module, &alog_module, &session_module, &upstream_module, &health_module, NULL,
};

rp_server *rp_server_new(const rp_server_config *cfg)
{
    rp_server *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    if (cfg)
        s->cfg = *cfg;
    apply_defaults(&s->cfg);
    s->modules = worker_modules;
    if (copy_config(s) || alog_setup(s, &s->cfg.access_log, s->cfg.request_id))
        goto err;
    s->cfg.access_log = (rp_access_log_config){0}; /* borrowed: s->alog holds what it needs */
    s->lim.max_head_bytes = s->cfg.max_header_bytes;
    s->lim.max_headers = s->cfg.max_header_count;
    s->lim.max_target_len = s->cfg.max_target_len;
    rp_log_set_level(s->cfg.log_level == 2   ? RP_LOG_DEBUG
                     : s->cfg.log_level == 1 ? RP_LOG_WARN
                                             : RP_LOG_INFO);
    return s;
err:
    rp_server_free(s);
    return NULL;
}

int rp_add_proxy_domain(rp_server *s, const rp_domain_config *d)
{
    int rc;

    if (!s)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    rc = route_add_domain(&s->rt, d);
    return rc ? rc : alog_add_domain(s, s->rt.n_targets - 1, d); /* the target just added */
}

int rp_set_http_routes(rp_server *s, const rp_http_route *routes, size_t n)
{
    if (!s || (n && !routes))
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    return route_set_routes(&s->rt, routes, n);
}

void rp_server_free(rp_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_listen; i++) {
        free(s->listen[i].addr);
        free(s->listen[i].pp_from);
    }
    free(s->listen);
    free(s->tls_cert);
    free(s->tls_key);
    route_table_fini(&s->rt);
    hooks_fini(&s->hooks);
    hooks_fini(&s->admin);
    if (s->admin_token) {
        explicit_bzero(s->admin_token, strlen(s->admin_token));
        free(s->admin_token);
    }
    cache_free(s->cache);
    alog_free(s);
    free(s);
}

size_t rp_backend_states(rp_server *s, rp_backend_state *out, size_t cap)
{
    size_t k = 0;

    if (!s)
        return 0;
    if (!out)
        cap = 0;
    for (uint32_t i = 0; i < route_count(&s->rt); i++) {
        const struct target *t = route_target(&s->rt, i);
        for (uint32_t j = 0; j < t->n_backends; j++, k++) {
            struct backend *be = t->backends[j];
            if (k >= cap)
                continue;
            out[k] = (rp_backend_state){
                .domain = t->label,
                .addr = be->addr,
                .healthy = atomic_load_explicit(&be->healthy, memory_order_relaxed),
                .in_flight = atomic_load_explicit(&be->inflight, memory_order_relaxed),
                .requests = atomic_load_explicit(&be->requests, memory_order_relaxed),
                .failures = atomic_load_explicit(&be->failures, memory_order_relaxed),
            };
        }
    }
    return k;
}

void rp_server_shutdown(rp_server *s)
{
    if (s) /* an atomic store: safe in a signal handler; workers see it within 100 ms */
        atomic_store(&s->stopping, 1);
}

/* ---- listeners --------------------------------------------------------------------------- */

static int parse_listen(const char *a, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon = strrchr(a, ':');
    size_t hl;
    long port;
    char *end;

    if (!colon)
        return -EINVAL;
    port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535 || end == colon + 1)
        return -EINVAL;
    hl = (size_t)(colon - a);
    if (a[0] == '[') {
        if (hl < 2 || a[hl - 1] != ']')
            return -EINVAL;
        a++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, a, hl);
    host[hl] = 0;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
    } else {
        return -EINVAL;
    }
    return 0;
}

static int open_listener(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1, ret;

    if (parse_listen(addr, &ss, &len)) {
        log_error("listen address '%s' is not ip:port or [ip6]:port", addr);
        return -EINVAL;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    /* accepted sockets inherit it: responses leave without waiting for ACKs */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 4096)) {
        ret = -errno;
        log_error("cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        return ret;
    }
    return fd;
}

static void close_listeners(rp_server *s)
{
    for (int i = 0; i < s->nthreads; i++) {
        struct worker *w = &s->workers[i];
        for (uint32_t j = 0; w->ls && j < w->n_ls; j++)
            if (w->ls[j].fd >= 0)
                close(w->ls[j].fd);
        free(w->ls);
        w->ls = NULL;
    }
}

/* Each traffic worker opens every traffic listener (SO_REUSEPORT spreads connections); the
 * admin listener is opened only by the admin worker, which opens nothing else. */
static int open_listeners(rp_server *s)
{
    for (int i = 0; i < s->nthreads; i++) {
        struct worker *w = &s->workers[i];
        bool admin_worker = i >= s->nworkers;
        w->ls = calloc(s->n_listen, sizeof(*w->ls));
        if (!w->ls)
            return -ENOMEM;
        for (size_t j = 0; j < s->n_listen; j++) {
            const struct listen_spec *spec = &s->listen[j];
            struct listener *l = &w->ls[w->n_ls];
            int fd;
            if (spec->admin != admin_worker)
                continue;
            if ((fd = open_listener(spec->addr)) < 0)
                return fd;
            l->fd = fd;
            l->tls = spec->tls;
            l->admin = spec->admin;
            l->spec = spec;
            l->accepted = session_accept;
            w->n_ls++;
        }
    }
    return 0;
}

/* ---- start-up ---------------------------------------------------------------------------- */

static int probe_io_uring(void)
{
    struct io_uring ring;
    int ret = io_uring_queue_init(2, &ring, 0);
    FILE *f;
    int disabled = -1;

    if (!ret) {
        io_uring_queue_exit(&ring);
        return 0;
    }
    f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    if (f) {
        if (fscanf(f, "%d", &disabled) != 1)
            disabled = -1;
        fclose(f);
    }
    if (disabled > 0)
        log_error("io_uring is disabled on this system (kernel.io_uring_disabled=%d); "
                  "ringproxy needs it: sysctl -w kernel.io_uring_disabled=0",
                  disabled);
    else
        log_error("io_uring is not available (%s): a seccomp filter or container policy may "
                  "block io_uring_setup, or the kernel is older than 6.1",
                  strerror(-ret));
    return ret;
}

struct thread_arg {
    struct worker *w;
    struct start_gate *g;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;

    worker_run(a->w, a->g);
    return NULL;
}

/* Starts the workers, waits for their set-up results, lets them run, joins them. */
static int run_workers(rp_server *s)
{
    struct start_gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};
    struct thread_arg *args;
    int err = 0, started = 0;

    if (s->nworkers < 1)
        return -EINVAL;
    args = calloc((size_t)s->nthreads, sizeof(*args));
    if (!args)
        return -ENOMEM;
    for (int i = 0; i < s->nthreads && !err; i++) {
        args[i] = (struct thread_arg){&s->workers[i], &g};
        if (pthread_create(&s->workers[i].thread, NULL, thread_main, &args[i]))
            err = -EAGAIN;
        else
            started++;
    }
    pthread_mutex_lock(&g.mu);
    while (g.reported < started)
        pthread_cond_wait(&g.cv, &g.mu);
    for (int i = 0; i < started; i++)
        if (s->workers[i].start_err && !err)
            err = s->workers[i].start_err;
    if (err)
        atomic_store(&s->stopping, 1);
    g.go = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    if (err)
        log_error("worker start-up failed: %s", strerror(-err));
    else
        log_info("ringproxy %s: %d workers serving %zu listener(s), %u domain(s), %u route(s)%s",
                 RP_VERSION, s->nworkers, s->n_listen, s->rt.n_domains, s->rt.n_routes,
                 s->nthreads > s->nworkers ? "; the admin listener on a thread of its own" : "");
    for (int i = 0; i < started; i++)
        pthread_join(s->workers[i].thread, NULL);
    free(args);
    return err;
}

static bool has_admin_listener(const rp_server *s)
{
    for (size_t i = 0; i < s->n_listen; i++)
        if (s->listen[i].admin)
            return true;
    return false;
}

static bool has_tls_listener(const rp_server *s)
{
    for (size_t i = 0; i < s->n_listen; i++)
        if (s->listen[i].tls)
            return true;
    return false;
}

static bool has_tls_backend(const struct target *t)
{
    for (uint32_t i = 0; i < t->n_backends; i++)
        if (t->backends[i]->tls)
            return true;
    return false;
}

/* Client contexts for targets with https:// backends (one per target: its CAs and
 * verification setting). */
static int tls_setup_upstreams(rp_server *s)
{
    char err[256];

    for (uint32_t i = 0; i < route_count(&s->rt); i++) {
        struct target *t = route_target(&s->rt, i);
        if (!has_tls_backend(t))
            continue;
        if (tls_global_init())
            return -EINVAL;
        t->up_tls = tls_client_new(t->tls_ca_file, !t->tls_no_verify, err, sizeof(err));
        if (!t->up_tls) {
            log_error("TLS to the backends of %s: %s", t->label, err);
            return -EINVAL;
        }
        s->upstream_tls = true;
    }
    return 0;
}

static void tls_teardown_upstreams(rp_server *s)
{
    for (uint32_t i = 0; i < route_count(&s->rt); i++) {
        tls_ctx_free(route_target(&s->rt, i)->up_tls);
        route_target(&s->rt, i)->up_tls = NULL;
    }
    s->upstream_tls = false;
}

/* The TLS server context, with each domain's own certificate for SNI, and the client
 * contexts for https:// backends. */
static int tls_setup(rp_server *s)
{
    char err[256];
    int rc = tls_setup_upstreams(s);

    if (rc || !has_tls_listener(s))
        return rc;
    if (!s->tls_cert || !s->tls_key) {
        log_error("TLS listeners need a certificate and a key (tls = { cert; key; })");
        return -EINVAL;
    }
    if (tls_global_init())
        return -EINVAL;
    s->tls = tls_server_new(s->tls_cert, s->tls_key, err, sizeof(err));
    if (!s->tls) {
        log_error("TLS: %s", err);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < s->rt.n_domains; i++) {
        const struct target *t = s->rt.domains[i];
        if (t->tls_cert &&
            tls_server_add_sni(s->tls, t->label, t->tls_cert, t->tls_key, err, sizeof(err))) {
            log_error("TLS for %s: %s", t->label, err);
            return -EINVAL;
        }
    }
    return 0;
}

int rp_listen_and_serve_tls(rp_server *s, const char *cert_file, const char *key_file)
{
    char *cert, *key;

    if (!s || !cert_file || !key_file)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    cert = strdup(cert_file);
    key = strdup(key_file);
    if (!cert || !key) {
        free(cert);
        free(key);
        return -ENOMEM;
    }
    free(s->tls_cert);
    free(s->tls_key);
    s->tls_cert = cert;
    s->tls_key = key;
    for (size_t i = 0; i < s->n_listen; i++)
        s->listen[i].tls = !s->listen[i].admin;
    return rp_listen_and_serve(s);
}

int rp_listen_and_serve(rp_server *s)
{
    int expected = 0, ret;

    if (!s)
        return -EINVAL;
    if (!atomic_compare_exchange_strong(&s->running, &expected, 1))
        return -EBUSY;
    ret = probe_io_uring();
    if (ret)
        goto out;
    s->nworkers = s->cfg.workers;
    s->nthreads = s->nworkers + (has_admin_listener(s) ? 1 : 0);
    s->workers = calloc((size_t)s->nthreads, sizeof(*s->workers));
    if (!s->workers) {
        ret = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < s->nthreads; i++) {
        s->workers[i].s = s;
        s->workers[i].id = i;
    }
    ret = health_table_init(&s->health, &s->rt);
    if (!ret)
        ret = tls_setup(s);
    if (!ret)
        ret = open_listeners(s);
    if (!ret && s->cache) /* compression runs beside the workers, never on them */
        ret = cache_compress_start(s->cache, (unsigned)s->cache_threads);
    if (!ret)
        ret = run_workers(s);
    close_listeners(s);
    metrics_free(s); /* every worker has stopped: no scrape can read them now */
    if (!ret)
        log_info("ringproxy stopped");
out:
    tls_ctx_free(s->tls);
    s->tls = NULL;
    tls_teardown_upstreams(s);
    free(s->health);
    s->health = NULL;
    free(s->workers);
    s->workers = NULL;
    s->nworkers = s->nthreads = 0;
    atomic_store(&s->running, 0);
    return ret;
}
