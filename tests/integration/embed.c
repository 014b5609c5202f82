/* embed.c: a front end that links libringproxy, as the library section of the README shows:
 * embed LISTEN_PORT BACKEND_PORT... proxies Host "embed.local" to the backends and drains on
 * SIGTERM. Built and run by test_library.py. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringproxy.h"

static rp_server *srv;

static void on_term(int sig)
{
    (void)sig;
    rp_server_shutdown(srv);
}

int main(int argc, char **argv)
{
    char listen_addr[64], addrs[8][64];
    const char *listen[] = {listen_addr};
    rp_backend_config be[8];
    int n = argc - 2;

    const char *cert = getenv("EMBED_TLS_CERT"), *key = getenv("EMBED_TLS_KEY");

    if (argc < 3 || n > 8)
        return 2;
    snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%s", argv[1]);
    memset(be, 0, sizeof(be));
    for (int i = 0; i < n; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "http://127.0.0.1:%s", argv[i + 2]);
        be[i].addr = addrs[i];
    }
    rp_server_config cfg = {.listen = listen, .n_listen = 1, .workers = 2};
    rp_domain_config d = {.domain = "embed.local", .backends = be, .n_backends = (size_t)n};
    rp_http_route routes[] = {{.path_prefix = "/r/", .backend = addrs[0]}};
    srv = rp_server_new(&cfg);
    if (!srv || rp_add_proxy_domain(srv, &d) || rp_set_http_routes(srv, routes, 1))
        return 1;
    if (rp_add_proxy_domain(srv, &d) != -17) /* -EEXIST: a duplicate domain is refused */
        return 3;
    signal(SIGTERM, on_term);
    /* with EMBED_TLS_CERT/KEY set, the listener serves TLS (the seed's ListenAndServeTLS) */
    int ret = cert && key ? rp_listen_and_serve_tls(srv, cert, key) : rp_listen_and_serve(srv);
    rp_backend_state st[16];
    size_t total = rp_backend_states(srv, st, 16);
    for (size_t i = 0; i < total && i < 16; i++)
        printf("backend %s %s healthy=%d in_flight=%u requests=%llu failures=%llu\n", st[i].domain,
               st[i].addr, st[i].healthy, st[i].in_flight, (unsigned long long)st[i].requests,
               (unsigned long long)st[i].failures);
    rp_server_free(srv);
    printf("served and drained: %d\n", ret);
    return ret ? 1 : 0;
}
