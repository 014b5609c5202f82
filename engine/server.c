/* server.c: the public library API of ringproxy.h: the server object, its configuration
 * defaults, listener sockets (one SO_REUSEPORT socket per worker per address), the io_uring
 * availability probe, and the worker threads' start and join.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

void server_apply_log_level(int level)
{
    rp_log_set_level(level == 2 ? RP_LOG_DEBUG : level == 1 ? RP_LOG_WARN : RP_LOG_INFO);
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
    if (!c->h2_max_concurrent_streams)
        c->h2_max_concurrent_streams = 128;
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
    pthread_mutex_init(&s->listen_mu, NULL);
    if (cfg)
        s->cfg = *cfg;
    pthread_mutex_init(&s->snap_mu, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    apply_defaults(&s->cfg);
    s->modules = worker_modules;
    if (copy_config(s) || alog_setup(s, &s->cfg.access_log, s->cfg.request_id))
        goto err;
    s->cfg.access_log = (rp_access_log_config){0}; /* borrowed: s->alog holds what it needs */
    s->lim.max_head_bytes = s->cfg.max_header_bytes;
    s->lim.max_headers = s->cfg.max_header_count;
    s->lim.max_target_len = s->cfg.max_target_len;
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
    for (uint32_t i = 0; !rc && i < s->rt.n_domains; i++)
        if (s->rt.domains[i]->index == s->rt.n_targets - 1) /* the one just added */
            return alog_add_domain(s, s->rt.domains[i], d);
    return rc;
}

int rp_set_http_routes(rp_server *s, const rp_http_route *routes, size_t n)
{
    if (!s || (n && !routes))
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    return route_set_routes(&s->rt, routes, n);
}

/* Closes the inherited sockets the server still holds (the workers serve on duplicates). */
static void drop_inherited(rp_server *s)
{
    for (size_t i = 0; i < s->n_inherited; i++)
        close(s->inherited[i].fd);
    free(s->inherited);
    s->inherited = NULL;
    s->n_inherited = 0;
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
    drop_inherited(s);
    pthread_mutex_destroy(&s->listen_mu);
    pthread_mutex_destroy(&s->snap_mu);
    pthread_mutex_destroy(&s->reload_mu);
    free(s);
}

void rp_server_set_reload_handler(rp_server *s, rp_reload_fn fn, void *user)
{
    if (!s)
        return;
    s->reload_fn = fn;
    s->reload_user = user;
}

uint64_t rp_server_generation(rp_server *s)
{
    return s ? atomic_load(&s->gen) : 0;
}

size_t rp_backend_states(rp_server *s, rp_backend_state *out, size_t cap)
{
    struct snapshot *snap = NULL;
    const struct route_table *rt;
    size_t k = 0;

    if (!s)
        return 0;
    if (!out)
        cap = 0;
    snap = snapshot_acquire(s); /* the table in force, or the one being configured */
    rt = snap ? &snap->rt : &s->rt;
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
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
    snapshot_put(s, snap);
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

int server_open_listener(const char *addr)
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

/* ---- listening sockets handed over by or to another process (binary upgrade) ------------ */

static bool same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
    const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return a4->sin_port == b4->sin_port && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    return a6->sin6_port == b6->sin6_port &&
           !memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr));
}

/* Whether fd is a listening TCP socket bound to *want. */
static bool listens_on(int fd, const struct sockaddr_storage *want)
{
    struct sockaddr_storage got;
    socklen_t len = sizeof(int), alen = sizeof(got);
    int acc = 0, type = 0, proto = 0;

    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) || !acc)
        return false;
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_STREAM)
        return false;
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) || proto != IPPROTO_TCP)
        return false;
    memset(&got, 0, sizeof(got));
    return !getsockname(fd, (struct sockaddr *)&got, &alen) && same_sockaddr(&got, want);
}

int rp_server_inherit_listener(rp_server *s, const char *addr, int fd)
{
    struct sockaddr_storage want, spec;
    struct inherited *in;
    socklen_t len;
    size_t j;

    if (!s || !addr || fd < 0 || parse_listen(addr, &want, &len))
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    for (j = 0; j < s->n_listen; j++)
        if (!parse_listen(s->listen[j].addr, &spec, &len) && same_sockaddr(&spec, &want))
            break;
    if (j == s->n_listen)
        return -ENOENT;
    if (!listens_on(fd, &want))
        return -EINVAL;
    in = realloc(s->inherited, (s->n_inherited + 1) * sizeof(*in));
    if (!in)
        return -ENOMEM;
    s->inherited = in;
    in[s->n_inherited++] = (struct inherited){.spec = j, .fd = fd};
    return 0;
}

size_t server_inherited_count(const rp_server *s, size_t spec)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n_inherited; i++)
        n += s->inherited[i].spec == spec;
    return n;
}

int server_inherited_dup(const rp_server *s, size_t spec, size_t m)
{
    int fd;

    m %= server_inherited_count(s, spec);
    for (size_t i = 0; i < s->n_inherited; i++)
        if (s->inherited[i].spec == spec && m-- == 0) {
            fd = fcntl(s->inherited[i].fd, F_DUPFD_CLOEXEC, 0);
            return fd < 0 ? -errno : fd;
        }
    return -ENOENT;
}

int rp_server_on_ready(rp_server *s, rp_ready_fn fn, void *user)
{
    if (!s)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    s->on_ready = fn;
    s->on_ready_user = user;
    return 0;
}

int rp_server_listeners(rp_server *s, rp_listener_fd *out, size_t cap)
{
    size_t n = 0, k = 0;
    int rc = 0;

    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&s->listen_mu);
    for (int i = 0; s->listeners_open && i < s->nthreads; i++)
        for (uint32_t j = 0; j < s->workers[i].n_ls; j++)
            n += s->workers[i].ls[j]->fd >= 0;
    for (int i = 0; n <= cap && !rc && s->listeners_open && i < s->nthreads; i++) {
        for (uint32_t j = 0; j < s->workers[i].n_ls && !rc; j++) {
            const struct listener *l = s->workers[i].ls[j];
            if (l->fd < 0)
                continue;
            out[k] = (rp_listener_fd){.kind = l->admin ? RP_LISTENER_ADMIN
                                              : l->tls ? RP_LISTENER_TLS
                                                       : RP_LISTENER_PLAIN};
            snprintf(out[k].addr, sizeof(out[k].addr), "%s", l->spec->addr);
            out[k].fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0);
            if (out[k].fd < 0)
                rc = -errno;
            else
                k++;
        }
    }
    pthread_mutex_unlock(&s->listen_mu);
    if (rc)
        while (k)
            close(out[--k].fd);
    return rc ? rc : (int)n;
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
                 RP_VERSION, s->nworkers, s->n_listen, s->snap->rt.n_domains, s->snap->rt.n_routes,
                 s->nthreads > s->nworkers ? "; the admin listener on a thread of its own" : "");
    if (!err && s->on_ready)
        s->on_ready(s, s->on_ready_user);
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
    server_apply_log_level(s->cfg.log_level); /* here, not in rp_server_new: a staged server
                                                 for a reload must not change it */
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
    pthread_mutex_lock(&s->listen_mu); /* rp_server_listeners may read s->workers now */
    s->listeners_open = true;
    pthread_mutex_unlock(&s->listen_mu);
    /* the first snapshot: the table, listening sockets, TLS contexts */
    ret = snapshot_init(s);
    if (!ret)
        ret = health_table_init(&s->health, &s->snap->rt, s->be_slots.cap);
    if (!ret && s->cache) /* compression runs beside the workers, never on them */
        ret = cache_compress_start(s->cache, (unsigned)s->cache_threads);
    if (!ret)
        ret = run_workers(s);
    metrics_free(s); /* every worker has stopped: no scrape can read them now */
    if (!ret)
        log_info("ringproxy stopped");
    if (s->snap)
        snapshot_fini(s);
out:
    pthread_mutex_lock(&s->listen_mu);
    s->listeners_open = false;
    pthread_mutex_unlock(&s->listen_mu);
    drop_inherited(s); /* the workers served on duplicates: these are for one run */
    s->upstream_tls = false;
    free(s->health);
    s->health = NULL;
    free(s->workers);
    s->workers = NULL;
    s->nworkers = s->nthreads = 0;
    atomic_store(&s->running, 0);
    return ret;
}
