/* ringfront.c: an example front end built on libringproxy. It proxies one domain (and, for
 * requests with any other Host, every path) to the backends given, and shapes traffic with
 * every kind of hook:
 *   - a request hook gives each request an X-Request-Id and rejects paths under a denied
 *     prefix with 403 and a reason;
 *   - a response hook stamps X-Served-By;
 *   - an error hook logs each failed attempt;
 *   - a local endpoint, GET /_front/status, answers with per-worker counters as JSON.
 * Per-worker counters are indexed by the worker that runs the hook: no locks.
 *
 *   ringfront [-l ADDR] [-d DOMAIN] [-w WORKERS] [--deny PREFIX] [--noop] BACKEND...
 *   ringfront -c FILE [--deny PREFIX] [--noop]
 *
 * -c takes the daemon's configuration file instead (through the daemon's loader,
 * engine/config.c). --noop registers a request and a response hook that do nothing, and
 * --no-hooks none at all: the two measure what the hook calls themselves cost
 * (tools/ab.py). SIGTERM/SIGINT drain and exit.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ringproxy.h"

#define MAX_BACKENDS 16

struct worker_stats {
    unsigned long long requests, denied, errors;
    char pad[64 - 3 * sizeof(unsigned long long)]; /* one cache line per worker */
};

struct front {
    const char *deny; /* path prefix answered 403 */
    size_t deny_len;
    struct worker_stats *ws;
    int workers;
    unsigned pid;
};

static rp_server *srv;

static void on_signal(int sig)
{
    (void)sig;
    rp_server_shutdown(srv);
}

static bool on_request(rp_proxy_request *pr, void *user)
{
    struct front *f = user;
    struct worker_stats *st = &f->ws[pr->worker];
    char id[64];

    if (f->deny_len && pr->path.len >= f->deny_len && !memcmp(pr->path.p, f->deny, f->deny_len)) {
        rp_response *r = rp_proxy_request_respond(pr, 403);
        st->denied++;
        if (r)
            rp_response_printf(r, "denied: %.*s is not served here\n", (int)pr->path.len,
                               pr->path.p);
        return false;
    }
    /* unique without coordination: process, worker, the worker's own count */
    snprintf(id, sizeof(id), "%x-%d-%llu", f->pid, pr->worker, ++st->requests);
    rp_headers_set(pr->headers, "X-Request-Id", id);
    return true;
}

static void on_response(rp_proxy_response *pr, void *user)
{
    (void)user;
    rp_headers_set(pr->headers, "X-Served-By", "ringfront");
}

static void on_error(const rp_proxy_error *e, void *user)
{
    struct front *f = user;

    f->ws[e->worker].errors++;
    fprintf(stderr, "ringfront: %s -> %s attempt %d: %s (%.*s %.*s)\n", e->domain, e->backend,
            e->attempt, e->message, (int)e->method.len, e->method.p, (int)e->path.len, e->path.p);
}

/* GET /_front/status: the counters, summed over workers (racy reads of other workers'
 * counters are fine for a status page). */
static void status_handler(const rp_request *req, rp_response *resp, void *user)
{
    struct front *f = user;
    unsigned long long requests = 0, denied = 0, errors = 0;
    rp_backend_state st[MAX_BACKENDS];
    size_t n = rp_backend_states(srv, st, MAX_BACKENDS);

    (void)req;
    for (int i = 0; i < f->workers; i++) {
        requests += f->ws[i].requests;
        denied += f->ws[i].denied;
        errors += f->ws[i].errors;
    }
    rp_headers_set(rp_response_headers(resp), "Content-Type", "application/json");
    rp_response_printf(resp, "{\"requests\":%llu,\"denied\":%llu,\"errors\":%llu,\"backends\":[",
                       requests, denied, errors);
    for (size_t i = 0; i < n && i < MAX_BACKENDS; i++)
        rp_response_printf(resp, "%s{\"addr\":\"%s\",\"healthy\":%s}", i ? "," : "", st[i].addr,
                           st[i].healthy ? "true" : "false");
    rp_response_printf(resp, "]}\n");
}

static bool noop_request(rp_proxy_request *pr, void *user)
{
    (void)pr;
    (void)user;
    return true;
}

static void noop_response(rp_proxy_response *pr, void *user)
{
    (void)pr;
    (void)user;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: ringfront [-l ADDR] [-d DOMAIN] [-w WORKERS] [--deny PREFIX] [--noop] "
            "http://BACKEND...\n       ringfront -c FILE [--deny PREFIX] [--noop | --no-hooks]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080", *domain = "front.local", *file = NULL;
    struct rp_file_config fc = {0};
    char err[512];
    rp_backend_config be[MAX_BACKENDS] = {{0}};
    struct front f = {.deny = "/private/", .pid = (unsigned)getpid()};
    size_t nbe = 0;
    bool noop = false, bare = false;
    int workers = 0, rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--noop"))
            noop = true;
        else if (!strcmp(a, "--no-hooks"))
            bare = true;
        else if (i + 1 < argc && !strcmp(a, "-c"))
            file = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "-l"))
            listen = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "-d"))
            domain = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "-w"))
            workers = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(a, "--deny"))
            f.deny = argv[++i];
        else if (a[0] != '-' && nbe < MAX_BACKENDS)
            be[nbe++].addr = a;
        else
            return usage();
    }
    f.deny_len = strlen(f.deny);
    if (file) {
        /* the daemon's file: its domains and routes, as `ringproxy -c FILE` would serve */
        if (rp_file_config_load(file, &fc, err, sizeof(err))) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        srv = rp_server_new(&fc.server);
        for (size_t i = 0; srv && i < fc.n_domains; i++)
            if (rp_add_proxy_domain(srv, &fc.domains[i]))
                return 1;
        if (!srv || (fc.n_routes && rp_set_http_routes(srv, fc.routes, fc.n_routes)))
            return 1;
    } else {
        if (!nbe)
            return usage();
        rp_server_config cfg = {.listen = &listen, .n_listen = 1, .workers = workers};
        rp_domain_config d = {.domain = domain, .backends = be, .n_backends = nbe};
        rp_http_route any = {.path_prefix = "/", .backend = be[0].addr};
        srv = rp_server_new(&cfg);
        if (!srv || rp_add_proxy_domain(srv, &d) || rp_set_http_routes(srv, &any, 1))
            return 1;
    }
    f.workers = rp_server_workers(srv);
    f.ws = calloc((size_t)f.workers, sizeof(*f.ws));
    if (!f.ws)
        return 1;
    if (bare) {
        rc = 0;
    } else if (noop) {
        rc = rp_on_proxy_request(srv, noop_request, NULL) |
             rp_on_proxy_response(srv, noop_response, NULL);
    } else {
        rc = rp_on_proxy_request(srv, on_request, &f) | rp_on_proxy_response(srv, on_response, &f) |
             rp_on_proxy_error(srv, on_error, &f) |
             rp_handle(srv, "GET", "/_front/status", status_handler, &f);
    }
    if (rc)
        return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    rc = rp_listen_and_serve(srv);
    rp_server_free(srv);
    rp_file_config_free(&fc);
    free(f.ws);
    return rc ? 1 : 0;
}
