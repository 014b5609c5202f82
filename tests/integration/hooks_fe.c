/* hooks_fe.c: a front end that exercises every hook and local endpoint call for
 * test_hooks.py: hooks_fe LISTEN_PORT BACKEND_PORT... proxies Host "hooks.local" to the
 * backends (max_retries 2). What each path makes the hooks do is listed beside the code.
 * Error hook calls are printed to stdout, one line each. SIGTERM drains.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ringproxy.h"

static rp_server *srv;

static void on_term(int sig)
{
    (void)sig;
    rp_server_shutdown(srv);
}

static bool path_is(rp_str p, const char *s)
{
    size_t n = strlen(s);
    return p.len >= n && !memcmp(p.p, s, n) && (p.len == n || p.p[n] == '?');
}

/* first request hook: fields a hook reads, rejections, Host, edits and their errors */
static bool req_first(rp_proxy_request *pr, void *user)
{
    char seen[512];
    rp_str ua;

    (void)user;
    snprintf(seen, sizeof(seen), "%s|%s|%s|%.*s|%.*s|%.*s|%d", pr->domain, pr->backend, pr->client_addr,
             (int)pr->method.len, pr->method.p, (int)pr->path.len, pr->path.p, (int)pr->host.len,
             pr->host.p, pr->worker);
    rp_headers_add(pr->headers, "X-Seen", seen);
    rp_headers_add(pr->headers, "X-Order", "first");
    if (path_is(pr->path, "/deny"))
        return false; /* the seed's default: 502 */
    if (path_is(pr->path, "/limit")) {
        rp_response *r = rp_proxy_request_respond(pr, 429);
        rp_headers_set(rp_response_headers(r), "Retry-After", "7");
        rp_response_printf(r, "slow down, %s\n", pr->client_addr);
        return false;
    }
    if (path_is(pr->path, "/sethost"))
        rp_proxy_request_set_host(pr, "custom.example:8443");
    if (path_is(pr->path, "/edits")) {
        char rc[160];
        snprintf(rc, sizeof(rc), "cl=%d host=%d xff=%d te=%d crlf=%d badname=%d",
                 rp_headers_set(pr->headers, "Content-Length", "5"),
                 rp_headers_set(pr->headers, "Host", "x"),
                 rp_headers_add(pr->headers, "X-Forwarded-For", "1.2.3.4"),
                 rp_headers_remove(pr->headers, "Transfer-Encoding"),
                 rp_headers_add(pr->headers, "X-Evil", "a\r\nInjected: 1"),
                 rp_headers_add(pr->headers, "Bad Name", "v"));
        rp_headers_add(pr->headers, "X-Rc", rc);
        rp_headers_remove(pr->headers, "User-Agent");
        rp_headers_set(pr->headers, "X-Replace", "new");
        rp_headers_add(pr->headers, "X-Multi", "1");
        rp_headers_add(pr->headers, "X-Multi", "2");
    }
    if (rp_headers_get(pr->headers, "user-agent", &ua))
        rp_headers_add(pr->headers, "X-UA-Seen", "yes");
    return true;
}

/* second request hook: runs after the first and sees its edits */
static bool req_second(rp_proxy_request *pr, void *user)
{
    rp_str v;
    char buf[128];

    (void)user;
    snprintf(buf, sizeof(buf), "second-saw-%.*s", rp_headers_get(pr->headers, "X-Order", &v) ? (int)v.len : 4,
             rp_headers_get(pr->headers, "X-Order", &v) ? v.p : "none");
    rp_headers_add(pr->headers, "X-Order", buf);
    return true;
}

static void resp_first(rp_proxy_response *pr, void *user)
{
    char seen[512];

    (void)user;
    snprintf(seen, sizeof(seen), "%s|%s|%.*s|%.*s|%d", pr->domain, pr->backend, (int)pr->method.len,
             pr->method.p, (int)pr->path.len, pr->path.p, pr->status);
    rp_headers_add(pr->headers, "X-Resp-Seen", seen);
    rp_headers_add(pr->headers, "X-Resp-Order", "1");
    if (path_is(pr->path, "/gone"))
        pr->status = 410;
    if (path_is(pr->path, "/nocontent"))
        pr->status = 204; /* would contradict the body's framing: ignored */
    if (path_is(pr->path, "/rmorigin"))
        rp_headers_remove(pr->headers, "X-Origin");
    if (path_is(pr->path, "/cachethis")) /* no freshness of its own: the hook admits it */
        rp_cache_this(pr, 60000, 2, NULL);
    if (path_is(pr->path, "/dontcache")) { /* explicit freshness, forbidden by the hook */
        rp_dont_cache(pr);
        rp_cache_this(pr, 60000, 0, NULL); /* rp_dont_cache wins whatever the order */
    }
    if (path_is(pr->path, "/respcl")) {
        char rc[64];
        snprintf(rc, sizeof(rc), "%d", rp_headers_set(pr->headers, "Content-Length", "1"));
        rp_headers_add(pr->headers, "X-Rc", rc);
    }
}

static void resp_second(rp_proxy_response *pr, void *user)
{
    (void)user;
    rp_headers_add(pr->headers, "X-Resp-Order", "2");
}

static void on_error(const rp_proxy_error *e, void *user)
{
    (void)user;
    printf("error %s %s attempt=%d err=%d %s | %.*s %.*s\n", e->domain, e->backend, e->attempt,
           e->err, e->message, (int)e->method.len, e->method.p, (int)e->path.len, e->path.p);
    fflush(stdout);
}

/* DELETE|GET /admin/cache/:domain, as in the seed */
static void purge_handler(const rp_request *req, rp_response *resp, void *user)
{
    rp_str d;

    (void)user;
    if (!rp_request_param(req, "domain", &d))
        d = (rp_str){"?", 1};
    rp_headers_set(rp_response_headers(resp), "Content-Type", "application/json");
    rp_response_printf(resp, "{\"method\":\"%.*s\",\"domain\":\"%.*s\",\"purged\":0}\n",
                       (int)req->method.len, req->method.p, (int)d.len, d.p);
}

/* the seed's admin example: DELETE /purge/:domain -> {"domain":..., "purged":N}; GET /stats */
static void purge_domain(const rp_request *req, rp_response *resp, void *user)
{
    rp_str d;
    char name[128];

    (void)user;
    rp_request_param(req, "domain", &d);
    snprintf(name, sizeof(name), "%.*s", (int)d.len, d.p);
    rp_response_printf(resp, "{\"domain\":\"%s\",\"purged\":%zu}\n", name,
                       rp_purge_domain_cache(srv, name));
}

static void cache_stats(const rp_request *req, rp_response *resp, void *user)
{
    rp_cache_stats st;

    (void)req;
    (void)user;
    rp_proxy_cache_stats(srv, &st);
    rp_response_printf(resp, "{\"entries\":%llu,\"hits\":%llu,\"misses\":%llu}\n",
                       (unsigned long long)st.entries, (unsigned long long)st.hits,
                       (unsigned long long)st.misses);
}

/* POST /echo/:a/:b: everything the handler can read */
static void echo_handler(const rp_request *req, rp_response *resp, void *user)
{
    rp_str a, b, h, n;

    (void)user;
    rp_request_param(req, "a", &a);
    rp_request_param(req, "b", &b);
    if (!rp_headers_get(req->headers, "x-test", &h))
        h = (rp_str){"-", 1};
    rp_response_set_status(resp, 201);
    rp_headers_add(rp_response_headers(resp), "X-Params", "yes");
    rp_response_printf(resp, "a=%.*s b=%.*s query=%.*s x-test=%.*s worker=%d len=%zu\n",
                       (int)a.len, a.p, (int)b.len, b.p, (int)req->query.len, req->query.p,
                       (int)h.len, h.p, req->worker, req->body.len);
    rp_response_write(resp, req->body.p, req->body.len);
    for (size_t i = 0; rp_headers_at(req->headers, i, &n, &h); i++)
        if (n.len == 6 && !strncasecmp(n.p, "x-list", 6))
            rp_response_printf(resp, "\nx-list=%.*s", (int)h.len, h.p);
}

/* GET /files/ then a "*rest" segment */
static void files_handler(const rp_request *req, rp_response *resp, void *user)
{
    rp_str rest;

    (void)user;
    rp_request_param(req, "rest", &rest);
    rp_response_printf(resp, "rest=[%.*s]\n", (int)rest.len, rest.p);
}

int main(int argc, char **argv)
{
    char listen_addr[64], addrs[8][64];
    const char *listen[] = {listen_addr};
    rp_backend_config be[8];
    int n = argc - 2, ret;

    if (argc < 3 || n > 8)
        return 2;
    snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%s", argv[1]);
    memset(be, 0, sizeof(be));
    for (int i = 0; i < n; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "http://127.0.0.1:%s", argv[i + 2]);
        be[i].addr = addrs[i];
    }
    rp_server_config cfg = {.listen = listen, .n_listen = 1, .workers = 2, .max_local_body_bytes = 4096,
                           .header_timeout_ms = 2000, .h2c = true}; /* test_h2 too */
    rp_domain_config d = {.domain = "hooks.local", .backends = be, .n_backends = (size_t)n,
                          .max_retries = 2};
    srv = rp_server_new(&cfg);
    if (!srv || rp_add_proxy_domain(srv, &d))
        return 1;
    if (rp_on_proxy_request(srv, req_first, NULL) || rp_on_proxy_request(srv, req_second, NULL) ||
        rp_on_proxy_response(srv, resp_first, NULL) || rp_on_proxy_response(srv, resp_second, NULL) ||
        rp_on_proxy_error(srv, on_error, NULL) ||
        rp_handle(srv, "DELETE", "/admin/cache/:domain", purge_handler, NULL) ||
        rp_handle(srv, "GET", "/admin/cache/:domain", purge_handler, NULL) ||
        rp_handle(srv, "POST", "/echo/:a/:b", echo_handler, NULL) ||
        rp_handle(srv, "GET", "/files/*rest", files_handler, NULL) ||
        rp_handle(srv, "DELETE", "/purge/:domain", purge_domain, NULL) ||
        rp_handle(srv, "GET", "/stats", cache_stats, NULL) || rp_set_proxy_cache(srv, NULL))
        return 3;
    /* refused registrations */
    if (rp_handle(srv, "GET", "/files/*rest", files_handler, NULL) != -EEXIST ||
        rp_handle(srv, "GET", "no-slash", files_handler, NULL) != -EINVAL ||
        rp_handle(srv, "GET", "/a/*rest/b", files_handler, NULL) != -EINVAL ||
        rp_handle(srv, "G T", "/x", files_handler, NULL) != -EINVAL ||
        rp_on_proxy_request(srv, NULL, NULL) != -EINVAL)
        return 4;
    printf("workers %d\n", rp_server_workers(srv));
    fflush(stdout);
    signal(SIGTERM, on_term);
    ret = rp_listen_and_serve(srv);
    rp_server_free(srv);
    printf("drained %d\n", ret);
    return ret ? 1 : 0;
}
